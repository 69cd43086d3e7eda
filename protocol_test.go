package silo_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/silofl/silo"
)

// TestCompactLog: a result's log lines survive the compact form, times to
// the millisecond, levels other than INFO kept; malformed lines are refused.
func TestCompactLog(t *testing.T) {
	t0 := time.Date(2026, 12, 5, 4, 26, 18, 98_000_000, time.UTC)
	lines := silo.CompactLog{
		{Time: t0, Level: "INFO", Message: "task started type=fit"},
		{Time: t0.Add(1500 * time.Millisecond), Message: "no level is INFO"},
		{Time: t0.Add(1500 * time.Millisecond), Level: "WARN", Message: "a \"quoted\"\nline"},
		{Time: t0.Add(-time.Second), Level: "ERROR", Message: "a clock that went back"},
	}
	b, err := json.Marshal(silo.TaskResult{Status: silo.TaskSucceeded, Log: lines})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"status":"succeeded","log":[[1796444778098,"task started type=fit"],[1500,"no level is INFO"],[0,"WARN","a \"quoted\"\nline"],[-2500,"ERROR","a clock that went back"]]}`
	if string(b) != want {
		t.Fatalf("compact form:\n%s\nwant\n%s", b, want)
	}
	var back silo.TaskResult
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	lines[1].Level = "INFO"
	if diff := cmp.Diff(lines, back.Log); diff != "" {
		t.Fatalf("round trip (-sent +read):\n%s", diff)
	}
	for _, bad := range []string{`[[1]]`, `[[1,"a","b","c"]]`, `[["x","m"]]`, `[[1,2]]`, `[[1,2,"m"]]`, `{"a":1}`} {
		var c silo.CompactLog
		if err := json.Unmarshal([]byte(bad), &c); err == nil {
			t.Errorf("%s was read as %v", bad, c)
		}
	}
}
