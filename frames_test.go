package silo

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

// TestFramesRoundTrip: a header and its parts come back as they were sent,
// the reader left at the first part.
func TestFramesRoundTrip(t *testing.T) {
	res := TaskResult{Status: TaskSucceeded, Output: []byte(`{"n_train":3}`), Parts: []Part{{Name: "params", Size: 5}, {Name: "task/x/blinded", Size: 3}},
		Logs: []LogLine{{TaskID: "t", Level: "INFO", Message: "line\nwith a newline"}}}
	var buf bytes.Buffer
	if err := WriteFrames(&buf, res, strings.NewReader("hello"), strings.NewReader("abc")); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(&buf)
	var got TaskResult
	if err := ReadFrameHeader(br, 1<<20, &got); err != nil {
		t.Fatal(err)
	}
	if got.Status != res.Status || len(got.Parts) != 2 || got.Logs[0].Message != res.Logs[0].Message {
		t.Fatalf("header = %+v", got)
	}
	rest, _ := io.ReadAll(br)
	if string(rest) != "helloabc" {
		t.Fatalf("parts = %q", rest)
	}
	if err := CheckParts(got.Parts, 8); err != nil {
		t.Fatal(err)
	}
}

// TestFramesRefuse: what a hostile peer may send is refused with a reason.
func TestFramesRefuse(t *testing.T) {
	for name, tc := range map[string]struct {
		body string
		max  int
		want string
	}{
		"no newline":     {`{"status":"succeeded"}`, 1 << 20, "ends before its header"},
		"too long":       {`{"status":"` + strings.Repeat("x", 100) + `"}` + "\n", 50, ""},
		"unknown field":  {`{"status":"succeeded","evil":1}` + "\n", 1 << 20, "unknown field"},
		"not json":       {"\x00\x01\n", 1 << 20, "frames header"},
		"trailing value": {`{"status":"succeeded"} {}` + "\n", 1 << 20, "data after its JSON"},
	} {
		var v TaskResult
		err := ReadFrameHeader(bufio.NewReader(strings.NewReader(tc.body)), tc.max, &v)
		if name == "too long" {
			if !errors.Is(err, ErrFrameHeaderTooLarge) {
				t.Errorf("%s: %v", name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want it to mention %q", name, err, tc.want)
		}
	}
	for name, tc := range map[string]struct {
		parts []Part
		want  string
	}{
		"path tricks":  {[]Part{{Name: "../etc/passwd", Size: 1}}, "must be 1–128"},
		"empty name":   {[]Part{{Name: "", Size: 1}}, "must be 1–128"},
		"twice":        {[]Part{{Name: "a", Size: 1}, {Name: "a", Size: 1}}, "listed twice"},
		"negative":     {[]Part{{Name: "a", Size: -1}}, "claims -1 bytes"},
		"one too big":  {[]Part{{Name: "a", Size: 11}}, "the limit is 10"},
		"all too big":  {[]Part{{Name: "a", Size: 6}, {Name: "b", Size: 6}}, "more than 10 bytes"},
		"cached extra": {[]Part{{Name: "a", Size: 10, Cached: true}, {Name: "b", Size: 10}}, ""},
	} {
		err := CheckParts(tc.parts, 10)
		if tc.want == "" {
			if err != nil {
				t.Errorf("%s: %v", name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want it to mention %q", name, err, tc.want)
		}
	}
}

// FuzzFrames: any body gives a header within its limits, whose parts pass
// CheckParts only when names and sizes are sound, or an error — never a
// panic, never more than the limit read for the header.
func FuzzFrames(f *testing.F) {
	var buf bytes.Buffer
	WriteFrames(&buf, TaskResult{Status: TaskSucceeded, Parts: []Part{{Name: "params", Size: 3}}}, strings.NewReader("abc"))
	f.Add(buf.Bytes())
	f.Add([]byte(`{"parts":[{"name":"a","size":-5}]}` + "\n"))
	f.Add([]byte("\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		const max = 1 << 12
		cr := &countingReader{r: bytes.NewReader(b)}
		br := bufio.NewReaderSize(cr, 256)
		var res TaskResult
		if err := ReadFrameHeader(br, max, &res); err != nil {
			return
		}
		if cr.n > max+256 {
			t.Fatalf("read %d bytes for a header limited to %d", cr.n, max)
		}
		if CheckParts(res.Parts, 100) == nil {
			var total int64
			for _, p := range res.Parts {
				if p.Size < 0 || !partName.MatchString(p.Name) {
					t.Fatalf("accepted part %+v", p)
				}
				if !p.Cached {
					total += p.Size
				}
			}
			if total > 100 {
				t.Fatalf("accepted %d bytes of parts over a limit of 100", total)
			}
		}
	})
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}
