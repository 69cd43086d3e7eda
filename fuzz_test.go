package silo

import (
	"encoding/json"
	"testing"
)

// FuzzParseSessionConfig: any bytes give a config or an *Error naming what
// is wrong, never a panic; an accepted config validates again unchanged.
func FuzzParseSessionConfig(f *testing.F) {
	f.Add([]byte(specExample))
	f.Add([]byte(`{"name":"x","datasets":["a"],"rounds":1,"task":{"type":"regression","target":"y"},"model":{"package":"ffnet","hidden_layers":[0]}}`))
	f.Add([]byte(`{"differential_privacy":{"epsilon":1e308,"delta":-1}}`))
	f.Add([]byte(`{"name":"l","type":"prl","datasets":["a","b"],"keys":[{"a":["e"],"b":["m"]},{"a":["p","q"],"b":["p","q"]}],"normalize":["digits_only","trim"]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseSessionConfig(b)
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error is %T, not *silo.Error: %v", err, err)
			}
			return
		}
		again, _ := json.Marshal(c)
		c2, err := ParseSessionConfig(again)
		if err != nil {
			t.Fatalf("an accepted config is refused when parsed again: %v\n%s", err, again)
		}
		if b2, _ := json.Marshal(c2); string(b2) != string(again) {
			t.Fatalf("validation is not idempotent:\n%s\n%s", again, b2)
		}
	})
}

// FuzzPrivacyControls: any JSON gives valid controls or a field error.
func FuzzPrivacyControls(f *testing.F) {
	d, _ := json.Marshal(DefaultPrivacyControls())
	f.Add(d)
	f.Add([]byte(`{"allowed_session_types":["hfl","hfl"],"allowed_users":[" A@B.org "],"identifier_columns":["id"],"excluded_columns":["id"]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var p PrivacyControls
		if json.Unmarshal(b, &p) != nil {
			return
		}
		if err := p.Validate(); err != nil {
			if e, ok := err.(*Error); !ok || e.Field == "" {
				t.Fatalf("error %v is not a field error", err)
			}
			return
		}
		if !(p.MaxEpsilonPerSession > 0 && p.MaxEpsilonPerSession <= p.EpsilonBudget && p.Delta > 0 && p.MinRecordsPerAggregate >= 1 && len(p.AllowedSessionTypes) > 0) {
			t.Fatalf("invalid controls accepted: %+v", p)
		}
	})
}
