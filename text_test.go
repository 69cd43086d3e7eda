package silo

import "testing"

func TestCheckText(t *testing.T) {
	for _, c := range []struct {
		s         string
		multiline bool
		ok        bool
	}{
		{"Ada Lovelace", false, true},
		{"Zoë Ørsted 東京", false, true},
		{"", false, true},
		{"two\nlines", false, false},
		{"two\r\nlines\tand a tab", true, true},
		{"nul\x00", true, false},
		{"esc\x1b[2J", true, false},
		{"del\x7f", false, false},
		{"c1\u0085", true, false},
		{"rtl\u202eexe.pdf", false, false},
		{"isolate\u2066x", false, false},
		{"bad utf-8 \xff", false, false},
	} {
		err := CheckText("name", c.s, c.multiline)
		if (err == nil) != c.ok {
			t.Errorf("CheckText(%q, multiline=%v) = %v, want ok=%v", c.s, c.multiline, err, c.ok)
		}
		if err != nil && ErrorCode(err) != EINVALID {
			t.Errorf("CheckText(%q): code %s", c.s, ErrorCode(err))
		}
	}
}
