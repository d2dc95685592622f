package configs

import (
	"strings"
	"testing"
)

// TestSigningResultKeys: trusted result keys must be nkey user public
// keys, and key files must be named; the error names the field. Valid
// keys and files are accepted as written.
func TestSigningResultKeys(t *testing.T) {
	const doc = `
playbook:
  signing:
%s
guards:
  - name: checkout
    service: checkout
    signals:
      - name: errors
`
	const key = "UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4"
	for _, tc := range []struct{ name, signing, err string }{
		{"seed as key", "    result_keys: [SUAMLK2ZNL35WSMW37E7UD4VZ7ELPKW7DHC3BWBSD2GCZ7IUQQXZIORRBU]",
			`playbook.signing.result_keys[0]: "SUAMLK2ZNL35WSMW37E7UD4VZ7ELPKW7DHC3BWBSD2GCZ7IUQQXZIORRBU" is not an nkey user public key`},
		{"garbage", "    result_keys: [" + key + ", nope]", `playbook.signing.result_keys[1]: "nope" is not an nkey user public key`},
		{"empty file", `    result_key_files: [""]`, "playbook.signing.result_key_files[0]: is empty"},
	} {
		_, err := Parse([]byte(strings.Replace(doc, "%s", tc.signing, 1)))
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.err)
		}
	}
	cfg, err := Parse([]byte(strings.Replace(doc, "%s", "    result_keys: ["+key+"]\n    result_key_files: [/etc/rollguard/actuators.pub]", 1)))
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.PlaybookDefaults.Signing
	if !s.ResultKeysConfigured() || s.ResultKeys[0] != key || s.ResultKeyFiles[0] != "/etc/rollguard/actuators.pub" {
		t.Errorf("signing = %+v", s)
	}
	if cfg, err = Parse([]byte(strings.Replace(doc, "%s", `    seed_file: ""`, 1))); err != nil || cfg.PlaybookDefaults.Signing.ResultKeysConfigured() {
		t.Errorf("no result keys: %v, configured %v", err, cfg.PlaybookDefaults.Signing.ResultKeysConfigured())
	}
}
