package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/silofl/silo"
)

// TestDatasetsCLI registers a dataset on a runner the server started, reads
// its schema, edits its privacy controls and attaches a file, all through
// the command line.
func TestDatasetsCLI(t *testing.T) {
	e, _ := newLiveEnv(t)
	root := filepath.Join(e.dir, "runners", "hospital")
	os.MkdirAll(root, 0o700)
	e.ok("runners", "register", "--provider", "local", "--name", "hospital-a", "--storage-path", "file://"+root)
	e.ok("runners", "start", "hospital-a")
	e.waitStatus("hospital-a", silo.RunnerOnline)

	check(t, []string{"datasets", "list"}, e.run("", "datasets", "list"), 0, []string{"No datasets yet"}, nil)

	var csv strings.Builder
	csv.WriteString("id,age,ward\n")
	for i := 0; i < 40; i++ {
		csv.WriteString(strings.Join([]string{"ID" + string(rune('A'+i%26)) + string(rune('a'+i/26)), "5" + string(rune('0'+i%10)), []string{"north", "south"}[i%2]}, ",") + "\n")
	}
	data := filepath.Join(root, "admissions.csv")
	os.WriteFile(data, []byte(csv.String()), 0o600)
	privacy := writeJSONFile(t, "privacy.json", map[string]any{"identifier_columns": []string{"id"}, "min_records_per_aggregate": 5})
	dict := filepath.Join(t.TempDir(), "dictionary.txt")
	os.WriteFile(dict, []byte("age: years at admission\n"), 0o600)

	out := e.ok("datasets", "register", "--runner", "hospital-a", "--name", "admissions", "--uri", "file://"+data, "--privacy", privacy, "--attach", dict)
	for _, want := range []string{"admissions on runner hospital-a: connected", "40 rows in 1 csv file(s)", "identifier: linkage only", "categories: north, south", "dictionary.txt"} {
		if !strings.Contains(out, want) {
			t.Errorf("register output lacks %q:\n%s", want, out)
		}
	}
	// The --json contract of 'datasets show' (SPEC §5).
	var m map[string]any
	e.json(&m, "datasets", "show", "admissions")
	hasKeys(t, "datasets show --json", m, "name", "runner", "uri", "status", "error", "row_count", "columns", "privacy")
	cols, _ := m["columns"].([]any)
	if len(cols) != 3 {
		t.Fatalf("columns = %v", m["columns"])
	}
	hasKeys(t, "a column", cols[0].(map[string]any), "name", "type", "nulls")
	// What binds the data, and who set each control.
	eff, _ := m["effective_privacy"].(map[string]any)
	hasKeys(t, "effective_privacy", eff, "controls", "sources")
	out = e.ok("datasets", "show", "admissions")
	if !regexp.MustCompile(`(?m)^min_records_per_aggregate\s+5\s+dataset admissions$`).MatchString(out) || !strings.Contains(out, "in effect on this data") {
		t.Errorf("datasets show does not say what binds the data:\n%s", out)
	}
	if strings.Contains(e.ok("datasets", "show", "admissions", "--json"), "IDAa") {
		t.Fatal("an identifier value reached the command line")
	}

	// Bad input: a typo in the privacy file, and an unknown runner.
	bad := writeJSONFile(t, "bad.json", map[string]any{"min_record_per_aggregate": 5})
	r := e.run("", "datasets", "privacy", "admissions", "-f", bad)
	check(t, nil, r, 1, nil, []string{"unknown field", "min_record_per_aggregate"})
	r = e.run("", "datasets", "register", "--runner", "ghost", "--name", "x_y_z", "--uri", "file:///x.csv", "--json")
	if r.code != 1 || jsonError(t, r.err).Field != "runner" {
		t.Fatalf("unknown runner: %+v", r)
	}
	r = e.run("", "datasets", "register", "--name", "x_y_z")
	check(t, nil, r, 2, nil, []string{"--runner, --name and --uri are required"})

	stricter := writeJSONFile(t, "strict.json", map[string]any{"identifier_columns": []string{"id"}, "excluded_columns": []string{"ward"}})
	out = e.ok("datasets", "privacy", "admissions", "-f", stricter)
	if !strings.Contains(out, "excluded: never read") {
		t.Errorf("privacy change not reflected:\n%s", out)
	}
	got := filepath.Join(t.TempDir(), "got.txt")
	e.ok("datasets", "attachment", "admissions", "1", "-o", got)
	if b, _ := os.ReadFile(got); string(b) != "age: years at admission\n" {
		t.Fatalf("downloaded attachment = %q", b)
	}
	e.ok("datasets", "deregister", "admissions")
	check(t, nil, e.run("", "datasets", "show", "admissions"), 1, nil, []string{"no dataset named"})

	// A file that is not there: the register command fails (exit 1), says
	// why and how to fix it; the URI is then corrected in place and the
	// dataset connects.
	r = e.run("", "datasets", "register", "--runner", "hospital-a", "--name", "admissions", "--uri", "file://"+filepath.Join(root, "admision.csv"), "--privacy", privacy)
	check(t, []string{"register a missing file"}, r, 1, []string{"admissions on runner hospital-a: error"}, []string{"could not read dataset admissions", "silo datasets edit admissions --uri URI"})
	out = e.ok("datasets", "edit", "admissions", "--uri", "file://"+data)
	if !strings.Contains(out, "admissions on runner hospital-a: connected") || !strings.Contains(out, "40 rows") {
		t.Errorf("after correcting the URI:\n%s", out)
	}
	r = e.run("", "datasets", "edit", "admissions", "--uri", "file:///etc/passwd")
	check(t, []string{"edit to outside the root"}, r, 1, nil, []string{"outside runner hospital-a's storage root"})
	check(t, []string{"edit nothing"}, e.run("", "datasets", "edit", "admissions"), 2, nil, []string{"give --uri or --description"})
	// --no-wait returns at once, whatever the runner finds later.
	r = e.run("", "datasets", "register", "--runner", "hospital-a", "--name", "later", "--uri", "file://"+filepath.Join(root, "nope.csv"), "--no-wait")
	check(t, []string{"--no-wait"}, r, 0, []string{"later on runner hospital-a: connecting"}, nil)

	// Every problem of a registration at once, one line each, and in the
	// API's shape with --json.
	bad2 := writeJSONFile(t, "bad2.json", map[string]any{"delta": 0.5, "max_epsilon_per_session": -1, "allowed_session_types": []string{"hfl", "bogus"}})
	args := []string{"datasets", "register", "--runner", "hospital-a", "--name", "Bad Name", "--uri", "s3://x.silo/y.csv", "--privacy", bad2}
	r = e.run("", args...)
	check(t, args, r, 1, nil, []string{"silo: 5 problems:", "  name: dataset name", "  uri: runner hospital-a is a local runner", "  privacy.delta: delta must be", "  privacy.max_epsilon_per_session:", "  privacy.allowed_session_types: allowed_session_types: unknown session type \"bogus\""})
	jerr := jsonError(t, e.run("", append(args, "--json")...).err)
	if jerr.Code != silo.EINVALID || len(jerr.Fields) != 5 || jerr.Fields[0].Field != "name" {
		t.Errorf("--json error = %+v, want every field", jerr)
	}

	// A privacy file that leaves allowed_session_types out allows what the
	// server runs, nothing it does not.
	var ds silo.Dataset
	e.json(&ds, "datasets", "show", "admissions")
	if strings.Join(ds.Privacy.AllowedSessionTypes, ",") != "hfl,prl" {
		t.Errorf("default allowed_session_types = %v, want the session types the server runs (hfl, prl)", ds.Privacy.AllowedSessionTypes)
	}

	// -h lists the subcommand's own flags and the privacy file's keys.
	out = e.ok("datasets", "register", "-h")
	for _, want := range []string{"Flags of 'silo datasets register':", "--no-wait", "--privacy VALUE", "Keys of the privacy controls file", "min_records_per_aggregate", "(default 10)", "every session type the server runs"} {
		if !strings.Contains(out, want) {
			t.Errorf("datasets register -h lacks %q:\n%s", want, out)
		}
	}
}

// TestEpsilonRoundedForPeople: the epsilon a dataset's data has spent is
// shown rounded in text (3.999785142041193 reads 4), exactly with --json.
func TestEpsilonRoundedForPeople(t *testing.T) {
	var out, errOut strings.Builder
	c := newCmd(streams{Stdout: &out, Stderr: &errOut}, "datasets show", datasetsUsage)
	d := &silo.Dataset{Name: "hospital_a", Runner: "hospital-a", Status: silo.DatasetConnected, Privacy: silo.DefaultPrivacyControls(), EpsilonSpent: 3.999785142041193,
		Effective: &silo.EffectivePrivacy{Controls: silo.DefaultPrivacyControls(), Sources: map[string][]string{}}}
	if err := c.printDataset(d); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "3.9997") || !strings.Contains(out.String(), "epsilon spent on it: 4)") {
		t.Errorf("text output:\n%s", out.String())
	}
	out.Reset()
	c.json = true
	if err := c.printDataset(d); err != nil || !strings.Contains(out.String(), `"epsilon_spent": 3.999785142041193`) {
		t.Errorf("--json output (%v):\n%s", err, out.String())
	}
}
