package main

import (
	"fmt"

	"github.com/rollguard/rollguard/actions"
	"github.com/rollguard/rollguard/actions/wire"
	"github.com/rollguard/rollguard/configs"
)

// resultVerifier builds the verifier of actuators' results from the
// signing settings: nil when no result key is configured (every result is
// then believed, and counted as unverified).
func resultVerifier(s configs.SigningConfig) (*actions.Verifier, error) {
	if !s.ResultKeysConfigured() {
		return nil, nil
	}
	keys := append([]string(nil), s.ResultKeys...)
	fromFiles, err := wire.ReadKeyFiles(s.ResultKeyFiles...)
	if err != nil {
		return nil, fmt.Errorf("playbook.signing.result_key_files: %w", err)
	}
	v, err := actions.NewVerifier(append(keys, fromFiles...)...)
	if err != nil {
		return nil, fmt.Errorf("playbook.signing: %w", err)
	}
	return v, nil
}

// initResultTrust gives the playbook the actuators' keys it believes
// results from, and says at start what a reader of the log must know:
// results go unchecked without keys, and cluster replicas that do not
// share the seed do not share message ids.
func (d *daemon) initResultTrust(cfg *configs.Config) error {
	v, err := resultVerifier(cfg.PlaybookDefaults.Signing)
	if err != nil {
		return err
	}
	d.playbook.SetResultKeys(v)
	d.warnResultTrust(cfg, v)
	if cfg.Clustered() && cfg.PlaybookDefaults.Signing.SeedFile == "" {
		d.log.Warn("clustered without playbook.signing.seed_file: each replica signs and keys message ids with its own key, " +
			"so a command published by two replicas is not deduplicated by JetStream; give every replica the same seed file")
	}
	return nil
}

func (d *daemon) warnResultTrust(cfg *configs.Config, v *actions.Verifier) {
	if v == nil {
		d.log.Warn("actuators' results are believed unverified: no playbook.signing.result_keys or result_key_files " +
			"(counted in rollguard_results_unverified_total); list the keys the actuators log at start")
		return
	}
	d.log.Info("actuators' results are verified", "keys", len(cfg.PlaybookDefaults.Signing.ResultKeys),
		"key_files", len(cfg.PlaybookDefaults.Signing.ResultKeyFiles))
}

// prepareResultTrust reads the result keys of cfg on reload; the commit
// swaps them in.
func (d *daemon) prepareResultTrust(cfg *configs.Config) (func(), error) {
	if d.playbook == nil { // a sidecar takes no results
		return func() {}, nil
	}
	v, err := resultVerifier(cfg.PlaybookDefaults.Signing)
	if err != nil {
		return nil, err
	}
	return func() {
		if (v == nil) != (d.playbook.ResultKeys() == nil) {
			d.warnResultTrust(cfg, v)
		}
		d.playbook.SetResultKeys(v)
	}, nil
}
