package configs

import (
	"fmt"
	"math"
	"net"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"gopkg.in/yaml.v3"
)

// Scrape protocols a job may negotiate, as Prometheus names them.
const (
	ScrapeProtocolProto          = "PrometheusProto"
	ScrapeProtocolOpenMetrics100 = "OpenMetricsText1.0.0"
	ScrapeProtocolOpenMetrics001 = "OpenMetricsText0.0.1"
	ScrapeProtocolText004        = "PrometheusText0.0.4"
)

// Scrape defaults. The default protocol order asks for protobuf first: it is
// the only exposition that carries native histograms and created timestamps
// for every metric type.
var (
	DefaultScrapeConfig = ScrapeConfig{
		ScrapeInterval: Duration(10 * time.Second),
		MetricsPath:    "/metrics",
		Scheme:         "http",
		BodySizeLimit:  16 << 20,
		ScrapeProtocols: []string{ScrapeProtocolProto, ScrapeProtocolOpenMetrics100,
			ScrapeProtocolOpenMetrics001, ScrapeProtocolText004},
		HTTPClientConfig: commoncfg.DefaultHTTPClientConfig,
	}
	// DefaultScrapeTimeout applies when scrape_timeout is unset, capped at the
	// job's scrape_interval.
	DefaultScrapeTimeout = Duration(10 * time.Second)
	DefaultFileSDConfig  = FileSDConfig{RefreshInterval: Duration(time.Minute)}
)

// ScrapeConfig is one Prometheus-style scrape job (the sidecar's input): a
// subset of Prometheus' scrape_configs without relabelling or service
// discovery beyond static and file targets.
type ScrapeConfig struct {
	JobName        string   `yaml:"job_name"`
	ScrapeInterval Duration `yaml:"scrape_interval"`
	// ScrapeTimeout defaults to 10s or the scrape_interval, whichever is shorter.
	ScrapeTimeout Duration `yaml:"scrape_timeout"`
	MetricsPath   string   `yaml:"metrics_path"`
	Scheme        string   `yaml:"scheme"`
	// Params are added to the scrape URL's query.
	Params map[string][]string `yaml:"params"`
	// HonorLabels keeps the target's own labels when they clash with the
	// job's (job, instance, static labels); otherwise the target's are
	// renamed exported_<name>, as in Prometheus.
	HonorLabels bool `yaml:"honor_labels"`
	// ScrapeProtocols are offered in this order of preference.
	ScrapeProtocols []string `yaml:"scrape_protocols"`
	// BodySizeLimit bounds the uncompressed body; a larger one fails the scrape.
	BodySizeLimit ByteSize       `yaml:"body_size_limit"`
	StaticConfigs []StaticConfig `yaml:"static_configs"`
	FileSDConfigs []FileSDConfig `yaml:"file_sd_configs"`
	// HTTPClientConfig holds basic_auth, authorization, bearer_token,
	// tls_config, proxy and redirect settings; its secrets marshal redacted.
	HTTPClientConfig commoncfg.HTTPClientConfig `yaml:",inline"`
}

// UnmarshalYAML sets the defaults before decoding.
func (c *ScrapeConfig) UnmarshalYAML(n *yaml.Node) error {
	*c = DefaultScrapeConfig
	c.ScrapeProtocols = nil
	type plain ScrapeConfig
	if err := n.Decode((*plain)(c)); err != nil {
		return err
	}
	if c.ScrapeProtocols == nil {
		c.ScrapeProtocols = append([]string(nil), DefaultScrapeConfig.ScrapeProtocols...)
	}
	if c.ScrapeTimeout == 0 {
		c.ScrapeTimeout = min(DefaultScrapeTimeout, c.ScrapeInterval)
	}
	return nil
}

// TargetGroup is a set of targets sharing labels: a static_configs entry, or
// one entry of a file_sd file (JSON or YAML, as in Prometheus).
type TargetGroup struct {
	// Targets are host:port addresses.
	Targets []string          `yaml:"targets" json:"targets"`
	Labels  map[string]string `yaml:"labels" json:"labels"`
}

// StaticConfig is a fixed target group.
type StaticConfig = TargetGroup

// FileSDConfig reads target groups from files matching globs; a file must end
// in .json, .yml or .yaml and hold a list of target groups.
type FileSDConfig struct {
	Files           []string `yaml:"files"`
	RefreshInterval Duration `yaml:"refresh_interval"`
}

// UnmarshalYAML sets the defaults before decoding.
func (c *FileSDConfig) UnmarshalYAML(n *yaml.Node) error {
	*c = DefaultFileSDConfig
	type plain FileSDConfig
	return n.Decode((*plain)(c))
}

// Meta labels a target group may set to override the job's scheme and path
// for its targets.
const (
	SchemeLabel      = model.SchemeLabel
	MetricsPathLabel = model.MetricsPathLabel
)

// ValidateTargetGroup checks a target group, from the configuration or from a
// file_sd file. The returned path is relative to the group ("targets[1]",
// "labels.foo") and empty when the error is about the group as a whole.
func ValidateTargetGroup(g TargetGroup) (path, msg string) {
	for i, t := range g.Targets {
		if m := checkTarget(t); m != "" {
			return fmt.Sprintf("targets[%d]", i), m
		}
	}
	names := make([]string, 0, len(g.Labels))
	for name := range g.Labels {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		v := g.Labels[name]
		p := "labels." + name
		switch {
		case !model.LegacyValidation.IsValidLabelName(name):
			return p, fmt.Sprintf("%q is not a valid label name (letters, digits and '_', not starting with a digit)", name)
		case strings.HasPrefix(name, model.ReservedLabelPrefix) && name != SchemeLabel && name != MetricsPathLabel:
			return p, fmt.Sprintf("label names starting with %q are reserved (only %s and %s may be set)",
				model.ReservedLabelPrefix, SchemeLabel, MetricsPathLabel)
		case !utf8.ValidString(v):
			return p, "is not valid UTF-8"
		case name == SchemeLabel && v != "http" && v != "https":
			return p, fmt.Sprintf("unknown scheme %q (known: http, https)", v)
		case name == MetricsPathLabel && !strings.HasPrefix(v, "/"):
			return p, fmt.Sprintf("%q must start with '/'", v)
		}
	}
	return "", ""
}

func checkTarget(t string) string {
	if t == "" {
		return "is empty"
	}
	if strings.Contains(t, "/") || strings.ContainsAny(t, " \t\r\n?#@") {
		return fmt.Sprintf("%q must be host:port, without a scheme, path or spaces", t)
	}
	host, port, err := net.SplitHostPort(t)
	if err != nil || host == "" {
		return fmt.Sprintf("%q must be host:port", t)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Sprintf("%q has an invalid port: use 1..65535", t)
	}
	return ""
}

// validateScrape checks c.ScrapeConfigs; paths start with scrape_configs[i].
func (c *Config) validateScrape() []fieldError {
	var errs []fieldError
	add := func(path, format string, args ...any) {
		errs = append(errs, fieldError{path, fmt.Sprintf(format, args...)})
	}
	jobs := map[string]int{}
	for i := range c.ScrapeConfigs {
		sc := &c.ScrapeConfigs[i]
		p := fmt.Sprintf("scrape_configs[%d]", i)
		switch {
		case sc.JobName == "":
			add(p+".job_name", "is empty")
		case !utf8.ValidString(sc.JobName):
			add(p+".job_name", "is not valid UTF-8")
		default:
			if j, dup := jobs[sc.JobName]; dup {
				add(p+".job_name", "%q is already used by scrape_configs[%d]", sc.JobName, j)
			}
			jobs[sc.JobName] = i
		}
		if sc.ScrapeInterval <= 0 {
			add(p+".scrape_interval", "must be > 0")
		}
		switch {
		case sc.ScrapeTimeout <= 0:
			add(p+".scrape_timeout", "must be > 0")
		case sc.ScrapeTimeout > sc.ScrapeInterval && sc.ScrapeInterval > 0:
			add(p+".scrape_timeout", "must be <= scrape_interval (%s)", sc.ScrapeInterval)
		}
		if !strings.HasPrefix(sc.MetricsPath, "/") {
			add(p+".metrics_path", "%q must start with '/'", sc.MetricsPath)
		}
		if sc.Scheme != "http" && sc.Scheme != "https" {
			add(p+".scheme", "unknown scheme %q (known: http, https)", sc.Scheme)
		}
		if sc.BodySizeLimit <= 0 {
			add(p+".body_size_limit", "must be > 0")
		}
		if len(sc.ScrapeProtocols) == 0 {
			add(p+".scrape_protocols", "needs at least one protocol")
		}
		seen := map[string]bool{}
		for j, proto := range sc.ScrapeProtocols {
			pp := fmt.Sprintf("%s.scrape_protocols[%d]", p, j)
			switch {
			case !knownScrapeProtocol(proto):
				add(pp, "unknown protocol %q (known: %s, %s, %s, %s)", proto, ScrapeProtocolProto,
					ScrapeProtocolOpenMetrics100, ScrapeProtocolOpenMetrics001, ScrapeProtocolText004)
			case seen[proto]:
				add(pp, "%q is listed twice", proto)
			}
			seen[proto] = true
		}
		for j, sg := range sc.StaticConfigs {
			if gp, msg := ValidateTargetGroup(sg); msg != "" {
				sp := fmt.Sprintf("%s.static_configs[%d]", p, j)
				if gp != "" {
					sp += "." + gp
				}
				add(sp, "%s", msg)
			}
		}
		for j, fsd := range sc.FileSDConfigs {
			fp := fmt.Sprintf("%s.file_sd_configs[%d]", p, j)
			if len(fsd.Files) == 0 {
				add(fp+".files", "needs at least one file or glob")
			}
			for k, f := range fsd.Files {
				switch ext := filepath.Ext(f); {
				case f == "":
					add(fmt.Sprintf("%s.files[%d]", fp, k), "is empty")
				case ext != ".json" && ext != ".yml" && ext != ".yaml":
					add(fmt.Sprintf("%s.files[%d]", fp, k), "%q must end in .json, .yml or .yaml", f)
				default:
					if _, err := filepath.Match(f, ""); err != nil {
						add(fmt.Sprintf("%s.files[%d]", fp, k), "%q is not a valid glob: %v", f, err)
					}
				}
			}
			if fsd.RefreshInterval <= 0 {
				add(fp+".refresh_interval", "must be > 0")
			}
		}
		// Validate also folds the deprecated bearer_token into authorization.
		if err := sc.HTTPClientConfig.Validate(); err != nil {
			add(p, "%v", err)
		}
	}
	return errs
}

func knownScrapeProtocol(p string) bool {
	switch p {
	case ScrapeProtocolProto, ScrapeProtocolOpenMetrics100, ScrapeProtocolOpenMetrics001, ScrapeProtocolText004:
		return true
	}
	return false
}

// ByteSize is a size in bytes, written as an integer or with a base-2 unit
// as Prometheus does: 512KiB, 16MiB, 1GiB (KB, MB and GB mean the same).
type ByteSize int64

var byteUnits = []struct {
	suffix string
	factor int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
	{"KB", 1 << 10}, {"MB", 1 << 20}, {"GB", 1 << 30},
	{"B", 1},
}

// UnmarshalYAML parses a size and reports the line on error.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, ok := parseByteSize(s)
	if !ok {
		return &lineError{line: n.Line, msg: fmt.Sprintf("invalid size %q: use bytes or a number and a unit, like 16MiB", s)}
	}
	*b = ByteSize(v)
	return nil
}

func parseByteSize(s string) (int64, bool) {
	s = strings.TrimSpace(s)
	factor := int64(1)
	for _, u := range byteUnits {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			s, factor = strings.TrimSpace(num), u.factor
			break
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 || v > math.MaxInt64/factor {
		return 0, false
	}
	return v * factor, true
}

// MarshalYAML writes the size with the largest unit that divides it.
func (b ByteSize) MarshalYAML() (any, error) { return b.String(), nil }

func (b ByteSize) String() string {
	v := int64(b)
	for i := 2; i >= 0; i-- { // GiB, MiB, KiB
		if u := byteUnits[i]; v != 0 && v%u.factor == 0 {
			return strconv.FormatInt(v/u.factor, 10) + u.suffix
		}
	}
	return strconv.FormatInt(v, 10) + "B"
}
