package configs

import (
	"fmt"
	"strings"
	"text/template"
	"time"

	"github.com/nats-io/nkeys"
	"gopkg.in/yaml.v3"
)

// When a data audit is asked for.
const (
	// DataAuditOnIntegrity asks for one only when a data-integrity signal moved.
	DataAuditOnIntegrity = "on_integrity"
	DataAuditAlways      = "always"
	DataAuditNever       = "never"
)

// PlaybookConfig is how rollguard runs the ROLL-BACK playbook once a guard
// regresses. The top-level block sets the defaults; a guard's own playbook
// block overrides any of them for that guard.
type PlaybookConfig struct {
	// DryRun publishes every command marked dry_run: actuators report what
	// they would do and do nothing.
	DryRun bool `yaml:"dry_run" json:"dry_run"`
	// ContainmentTimeout is how long a flag kill has to bring recovery
	// before rollguard takes the next rung (rollback).
	ContainmentTimeout Duration `yaml:"containment_timeout" json:"containment_timeout"`
	// RecoveryTimeout is how long the last rung (a rollback, or a flag kill
	// when no rollback is allowed) has to bring recovery before the
	// incident is escalated to people.
	RecoveryTimeout Duration `yaml:"recovery_timeout" json:"recovery_timeout"`
	// HealthyHold is how long every signal must stay healthy after an
	// action before the incident counts as stabilized.
	HealthyHold Duration `yaml:"healthy_hold" json:"healthy_hold"`
	// AckTimeout is how long an actuator has to report on a command (an
	// in_progress report starts the clock again).
	AckTimeout Duration `yaml:"ack_timeout" json:"ack_timeout"`
	// MaxActionTime is, per action, how long after publishing in_progress
	// reports may keep extending the ack clock: long enough for a real
	// redeploy, short enough that a stuck actuator is noticed.
	MaxActionTime map[string]Duration `yaml:"max_action_time" json:"max_action_time"`
	// StatusInterval is the cadence of status updates while an incident is open.
	StatusInterval Duration `yaml:"status_interval" json:"status_interval"`
	// CloseAfter is how long a stabilized incident stays open (still
	// watched) before it closes.
	CloseAfter Duration `yaml:"close_after" json:"close_after"`
	// CommandTTL is how long after issue a command may still be acted on.
	CommandTTL Duration `yaml:"command_ttl" json:"command_ttl"`
	// DataAudit is when a data_audit command is sent: on_integrity, always or never.
	DataAudit string `yaml:"data_audit" json:"data_audit"`
	// Approval lists the actions that wait for a person's approval
	// (rollguard approve ID) before they are sent.
	Approval []string `yaml:"approval" json:"approval"`
	// Cooldown is the least time between two automatic actions on the
	// same service (the commands of one step count as one action).
	Cooldown Duration `yaml:"cooldown" json:"cooldown"`
	// Templates render the status texts.
	Templates StatusTemplates `yaml:"templates" json:"templates"`
}

// StatusTemplates are Go text/templates over the incident (see
// docs/playbook.md for the fields).
type StatusTemplates struct {
	Internal string `yaml:"internal" json:"internal"`
	Customer string `yaml:"customer" json:"customer"`
}

// GlobalPlaybookConfig adds what is shared by every guard.
type GlobalPlaybookConfig struct {
	PlaybookConfig `yaml:",inline"`
	// Budget caps the commands sent across all guards; further ones are
	// held for a person's approval and their incident is escalated.
	Budget BudgetConfig `yaml:"budget" json:"budget"`
	// Signing is the ed25519 key commands are signed with.
	Signing SigningConfig `yaml:"signing" json:"signing"`
}

// BudgetConfig is at most MaxCommands commands per Window.
type BudgetConfig struct {
	MaxCommands int      `yaml:"max_commands" json:"max_commands"`
	Window      Duration `yaml:"window" json:"window"`
}

// SigningConfig names the nkey seed file (an "SU…" user seed, as
// `nsc generate nkey --user` or `nk -gen user` writes). Empty: rollguard
// creates one under --storage.path on first start and keeps it. The seed
// also keys the Nats-Msg-Id of everything rollguard publishes, so
// replicas of a cluster must share it.
//
// ResultKeys and ResultKeyFiles are the actuators' public keys ("U…"; a
// file holds one per line) whose results rollguard believes. With none,
// every result is believed and counted as unverified.
type SigningConfig struct {
	SeedFile       string   `yaml:"seed_file" json:"seed_file"`
	ResultKeys     []string `yaml:"result_keys" json:"result_keys,omitempty"`
	ResultKeyFiles []string `yaml:"result_key_files" json:"result_key_files,omitempty"`
}

// ResultKeysConfigured reports whether any trusted result key is named.
func (s SigningConfig) ResultKeysConfigured() bool {
	return len(s.ResultKeys) > 0 || len(s.ResultKeyFiles) > 0
}

// Default status texts. The customer text says nothing internal.
const (
	DefaultInternalTemplate = `[{{.State}}] {{.Service}} {{.Deployment.PreviousVersion}} -> {{.Deployment.Version}} (incident {{.ID}}): {{.Reason}}` +
		`{{range .Commands}}; {{.Action}}{{if .Target.Flag}} {{.Target.Flag}}{{end}}{{if .Target.Version}} to {{.Target.Version}}{{end}}: {{.Status}}{{end}}`
	DefaultCustomerTemplate = `{{if eq .State "stabilized" "closed"}}The issue affecting {{.Service}} has been resolved; we keep monitoring.` +
		`{{else}}We are aware of an issue affecting {{.Service}} and are working on it. Next update within {{.NextUpdate}}.{{end}}`
)

// DefaultPlaybook is what every guard gets unless it says otherwise.
var DefaultPlaybook = GlobalPlaybookConfig{
	PlaybookConfig: PlaybookConfig{
		ContainmentTimeout: Duration(5 * time.Minute),
		RecoveryTimeout:    Duration(15 * time.Minute),
		HealthyHold:        Duration(2 * time.Minute),
		AckTimeout:         Duration(time.Minute),
		MaxActionTime: map[string]Duration{"flag_kill": Duration(5 * time.Minute),
			"rollback": Duration(30 * time.Minute), "data_audit": Duration(2 * time.Hour)},
		StatusInterval: Duration(15 * time.Minute),
		CloseAfter:     Duration(30 * time.Minute),
		CommandTTL:     Duration(15 * time.Minute),
		DataAudit:      DataAuditOnIntegrity,
		Templates:      StatusTemplates{Internal: DefaultInternalTemplate, Customer: DefaultCustomerTemplate},
	},
	Budget: BudgetConfig{MaxCommands: 20, Window: Duration(time.Hour)},
}

// UnmarshalYAML sets the defaults before decoding.
func (c *GlobalPlaybookConfig) UnmarshalYAML(n *yaml.Node) error {
	*c = DefaultPlaybook
	// A copy, so that the keys a file sets merge into the defaults without
	// changing them for the next file.
	c.MaxActionTime = map[string]Duration{}
	for k, v := range DefaultPlaybook.MaxActionTime {
		c.MaxActionTime[k] = v
	}
	type plain GlobalPlaybookConfig
	return n.Decode((*plain)(c))
}

// GuardPlaybookConfig overrides the global playbook for one guard; a key
// left out keeps the global value.
type GuardPlaybookConfig struct {
	DryRun             *bool               `yaml:"dry_run"`
	ContainmentTimeout *Duration           `yaml:"containment_timeout"`
	RecoveryTimeout    *Duration           `yaml:"recovery_timeout"`
	HealthyHold        *Duration           `yaml:"healthy_hold"`
	AckTimeout         *Duration           `yaml:"ack_timeout"`
	MaxActionTime      map[string]Duration `yaml:"max_action_time"`
	StatusInterval     *Duration           `yaml:"status_interval"`
	CloseAfter         *Duration           `yaml:"close_after"`
	CommandTTL         *Duration           `yaml:"command_ttl"`
	DataAudit          *string             `yaml:"data_audit"`
	Approval           *[]string           `yaml:"approval"`
	Cooldown           *Duration           `yaml:"cooldown"`
	Templates          *StatusTemplates    `yaml:"templates"`
}

// Playbook returns the guard's effective playbook settings.
func (c *Config) Playbook(guard string) PlaybookConfig {
	p := c.PlaybookDefaults.PlaybookConfig
	for _, g := range c.Guards {
		if g.Name != guard || g.Playbook == nil {
			continue
		}
		o := g.Playbook
		set := func(dst *Duration, src *Duration) {
			if src != nil {
				*dst = *src
			}
		}
		if o.DryRun != nil {
			p.DryRun = *o.DryRun
		}
		set(&p.ContainmentTimeout, o.ContainmentTimeout)
		set(&p.RecoveryTimeout, o.RecoveryTimeout)
		set(&p.HealthyHold, o.HealthyHold)
		set(&p.AckTimeout, o.AckTimeout)
		if o.MaxActionTime != nil {
			merged := map[string]Duration{}
			for k, v := range p.MaxActionTime {
				merged[k] = v
			}
			for k, v := range o.MaxActionTime {
				merged[k] = v
			}
			p.MaxActionTime = merged
		}
		set(&p.StatusInterval, o.StatusInterval)
		set(&p.CloseAfter, o.CloseAfter)
		set(&p.CommandTTL, o.CommandTTL)
		set(&p.Cooldown, o.Cooldown)
		if o.DataAudit != nil {
			p.DataAudit = *o.DataAudit
		}
		if o.Approval != nil {
			p.Approval = *o.Approval
		}
		if o.Templates != nil {
			if o.Templates.Internal != "" {
				p.Templates.Internal = o.Templates.Internal
			}
			if o.Templates.Customer != "" {
				p.Templates.Customer = o.Templates.Customer
			}
		}
	}
	return p
}

// Actions the playbook can take; the names are the NATS subject tokens.
var playbookActions = []string{"flag_kill", "rollback", "data_audit"}

func (c *Config) validatePlaybook() []fieldError {
	var errs []fieldError
	add := func(path, format string, args ...any) {
		errs = append(errs, fieldError{path, fmt.Sprintf(format, args...)})
	}
	g := c.PlaybookDefaults
	if g.Budget.MaxCommands < 1 {
		add("playbook.budget.max_commands", "must be >= 1")
	}
	if g.Budget.Window <= 0 {
		add("playbook.budget.window", "must be > 0")
	}
	check := func(prefix string, p PlaybookConfig) {
		for _, d := range []struct {
			key string
			v   Duration
		}{{"containment_timeout", p.ContainmentTimeout}, {"recovery_timeout", p.RecoveryTimeout},
			{"healthy_hold", p.HealthyHold}, {"ack_timeout", p.AckTimeout}, {"status_interval", p.StatusInterval},
			{"close_after", p.CloseAfter}, {"command_ttl", p.CommandTTL}} {
			if d.v <= 0 {
				add(prefix+"."+d.key, "must be > 0")
			}
		}
		if p.Cooldown < 0 {
			add(prefix+".cooldown", "must be >= 0")
		}
		if p.HealthyHold >= p.ContainmentTimeout && p.ContainmentTimeout > 0 {
			add(prefix+".healthy_hold", "must be shorter than containment_timeout (%s), or a flag kill could never be seen to work", p.ContainmentTimeout)
		}
		if p.HealthyHold >= p.RecoveryTimeout && p.RecoveryTimeout > 0 {
			add(prefix+".healthy_hold", "must be shorter than recovery_timeout (%s)", p.RecoveryTimeout)
		}
		switch p.DataAudit {
		case DataAuditOnIntegrity, DataAuditAlways, DataAuditNever:
		default:
			add(prefix+".data_audit", "%q must be one of on_integrity, always, never", p.DataAudit)
		}
		for a, d := range p.MaxActionTime {
			if !contains(playbookActions, a) {
				add(prefix+".max_action_time."+a, "%q is not an action (known: flag_kill, rollback, data_audit)", a)
			} else if d < p.AckTimeout {
				add(prefix+".max_action_time."+a, "must be >= ack_timeout (%s)", p.AckTimeout)
			}
		}
		for i, a := range p.Approval {
			if !contains(playbookActions, a) {
				add(fmt.Sprintf("%s.approval[%d]", prefix, i), "%q is not an action (known: flag_kill, rollback, data_audit)", a)
			}
		}
		for _, t := range []struct{ key, text string }{{"internal", p.Templates.Internal}, {"customer", p.Templates.Customer}} {
			if _, err := template.New(t.key).Option("missingkey=error").Parse(t.text); err != nil {
				add(prefix+".templates."+t.key, "%v", err)
			}
		}
	}
	for i, k := range g.Signing.ResultKeys {
		if !nkeys.IsValidPublicUserKey(strings.TrimSpace(k)) {
			add(fmt.Sprintf("playbook.signing.result_keys[%d]", i), "%.60q is not an nkey user public key (\"U…\", as the actuator logs it)", k)
		}
	}
	for i, f := range g.Signing.ResultKeyFiles {
		if strings.TrimSpace(f) == "" {
			add(fmt.Sprintf("playbook.signing.result_key_files[%d]", i), "is empty")
		}
	}
	check("playbook", g.PlaybookConfig)
	for i, gc := range c.Guards {
		if gc.Playbook != nil {
			check(fmt.Sprintf("guards[%d].playbook", i), c.Playbook(gc.Name))
		}
	}
	return errs
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}
