package blob

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/silofl/silo"
)

func TestParseURI(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want URI
		str  string // String(), if not in
	}{
		{in: "file:///data/x.csv", want: URI{"file", "", "/data/x.csv"}},
		{in: "file:///data/folder/", want: URI{"file", "", "/data/folder/"}},
		{in: "file:///", want: URI{"file", "", "/"}},
		{in: "FILE:///data/a..b.csv", want: URI{"file", "", "/data/a..b.csv"}, str: "file:///data/a..b.csv"},
		{in: "file:///data/my%20file%25.csv", want: URI{"file", "", "/data/my file%.csv"}},
		{in: "file:///data/%C3%A9t%C3%A9.csv", want: URI{"file", "", "/data/été.csv"}, str: "file:///data/été.csv"},
		{in: "file:///data/q%3F%23.csv", want: URI{"file", "", "/data/q?#.csv"}},
		{in: "s3://acme-a.silo/data/x.parquet", want: URI{"s3", "acme-a.silo", "data/x.parquet"}},
		{in: "s3://acme-a.silo/data/", want: URI{"s3", "acme-a.silo", "data/"}},
		{in: "s3://acme-a.silo", want: URI{"s3", "acme-a.silo", ""}},
		{in: "s3://acme-a.silo/", want: URI{"s3", "acme-a.silo", ""}, str: "s3://acme-a.silo"},
		{in: "s3://acme-a.silo/user@x:y.csv", want: URI{"s3", "acme-a.silo", "user@x:y.csv"}},
		{in: "azure://silo/patients/2024/", want: URI{"azure", "silo", "patients/2024/"}},
		{in: "azure://my-data/x.csv", want: URI{"azure", "my-data", "x.csv"}},
	} {
		got, err := ParseURI(tc.in)
		if err != nil {
			t.Errorf("ParseURI(%q): %v", tc.in, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("ParseURI(%q) (-want +got):\n%s", tc.in, diff)
		}
		str := tc.str
		if str == "" {
			str = tc.in
		}
		if got.String() != str {
			t.Errorf("ParseURI(%q).String() = %q, want %q", tc.in, got.String(), str)
		}
	}
}

func TestParseURIRefuses(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string // in the message
	}{
		{"", "a URI is required"},
		{"/data/x.csv", "file:///data/x.csv"},
		{"data/x.csv", "has no scheme"},
		{"file:/data/x.csv", "file:///data/x.csv"},
		{"file://data/x.csv", "file:///data/x.csv"},
		{"gs://b/x", `unknown scheme "gs"`},
		{"s3a://acme.silo/x", "write s3://"},
		{"https://acct.blob.core.windows.net/silo/x.csv", "azure://silo/x.csv"},
		{"wasbs://c@acct.blob.core.windows.net/x", "credentials"},
		{"s3://AKIAEXAMPLE:secret@acme.silo/x", "credentials"},
		{"azure://silo/x.csv?sv=2024&sig=SECRET", "query"},
		{"s3://acme.silo/x.csv#frag", "fragment"},
		{"file:///data/../etc/passwd", ".."},
		{"file:///data/%2e%2e/etc/passwd", ".."},
		{"file:///data/%2E%2E", ".."},
		{"file:///data/a%2F..%2Fb", ".."},
		{"s3://acme.silo/a/../b", ".."},
		{"file:///data/./x", ". segments"},
		{"file:///data//x", "empty path segments"},
		{"file:////data", "empty path segments"},
		{"s3://acme.silo//x", "empty path segments"},
		{"file:///data/%zz", "percent-escape"},
		{"file:///data/%00", "control characters"},
		{"file:///data/a\nb", "control characters"},
		{"s3://acme-data/x.csv", `must end in ".silo"`},
		{"s3://Acme.silo/x", `(e.g. "acme.silo")`},
		{"s3:///x", "names no bucket"},
		{"s3://a..silo/x", "two dots"},
		{"s3://192.168.0.1/x", "IP address"},
		{"azure:///x", "names no container"},
		{"azure://Silo/x", "not a valid Azure container name"},
		{"azure://a--b/x", "single hyphens"},
		{"azure://ab/x", "3–63"},
		{"azure://-ab/x", "not a valid Azure container name"},
		{"s3://acme.silo/" + strings.Repeat("k", 1025), "1024"},
	} {
		_, err := ParseURI(tc.in)
		e, ok := err.(*silo.Error)
		if !ok {
			t.Errorf("ParseURI(%q) = %v, want a *silo.Error", tc.in, err)
			continue
		}
		if e.Code != silo.EINVALID || e.Field != "uri" {
			t.Errorf("ParseURI(%q): code %q field %q, want invalid uri", tc.in, e.Code, e.Field)
		}
		if !strings.Contains(e.Message, tc.want) {
			t.Errorf("ParseURI(%q) = %q, want it to contain %q", tc.in, e.Message, tc.want)
		}
		for _, secret := range []string{"SECRET", "secret@"} {
			if strings.Contains(e.Message, secret) {
				t.Errorf("ParseURI(%q) message %q repeats a secret", tc.in, e.Message)
			}
		}
	}
}

func FuzzParseURI(f *testing.F) {
	for _, s := range []string{
		"file:///data/x.csv", "file:///data/dir/", "file:///a/%2e%2e/b", "file:///a%20b",
		"s3://acme.silo/data/x.parquet", "s3://acme.silo", "s3://acme.silo/a%3Fb", "s3://u:p@acme.silo/x",
		"azure://silo/x/y/", "azure://silo/%C3%A9", "azure://silo/a?b", "file://host/x", "/x", "",
		"file:///a\x00b", "s3://acme.silo/a%2F%2Fb", "file:///%e2%80%8b",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParseURI(s)
		if err != nil {
			if e, ok := err.(*silo.Error); !ok || e.Code != silo.EINVALID || e.Field != "uri" {
				t.Fatalf("ParseURI(%q) error %#v is not an invalid uri *silo.Error", s, err)
			}
			return
		}
		if slices.Contains(strings.Split(u.Path, "/"), "..") {
			t.Fatalf("ParseURI(%q) = %#v has a .. segment", s, u)
		}
		again, err := ParseURI(u.String())
		if err != nil {
			t.Fatalf("ParseURI(%q) = %#v, but its String %q does not parse: %v", s, u, u.String(), err)
		}
		if again != u {
			t.Fatalf("ParseURI(%q) = %#v, String %q parses as %#v", s, u, u.String(), again)
		}
	})
}

// TestLocations: locations are canonical, and contain one another by whole
// path segments.
func TestLocations(t *testing.T) {
	loc := func(s string) string {
		u, err := ParseURI(s)
		if err != nil {
			t.Fatal(err)
		}
		return u.Location()
	}
	for _, tc := range []struct{ a, b string }{
		{"file:///srv/a/", "file:///srv/a"},
		{"s3://bank.silo/crm/", "s3://bank.silo/crm"},
		{"azure://data/x/", "azure://data/x"},
		{"file:///", "file:///"},
	} {
		if loc(tc.a) != loc(tc.b) {
			t.Errorf("%s and %s are different locations: %q, %q", tc.a, tc.b, loc(tc.a), loc(tc.b))
		}
	}
	for _, tc := range []struct {
		loc, prefix string
		within      bool
	}{
		{"file:///srv/a/x.csv", "file:///srv/a/", true},
		{"file:///srv/a", "file:///srv/a/", true},
		{"file:///srv/ab.csv", "file:///srv/a/", false},
		{"file:///srv/ab.csv", "file:///srv/a", false},
		{"file:///srv/a/x.csv", "file:///", true},
		{"s3://bank.silo/crm/2024/p.parquet", "s3://bank.silo/crm/", true},
		{"s3://bank.silo/crm2/p.parquet", "s3://bank.silo/crm/", false},
		{"s3://bank.silo/crm/p", "s3://bank.silo", true},
		{"s3://other.silo/crm/p", "s3://bank.silo/crm", false},
		{"azure://data/x/y.csv", "s3://data.silo/x", false},
	} {
		if got := LocationWithin(loc(tc.loc), loc(tc.prefix)); got != tc.within {
			t.Errorf("LocationWithin(%s, %s) = %v", tc.loc, tc.prefix, got)
		}
		if !LocationsOverlap(loc(tc.prefix), loc(tc.loc)) && tc.within {
			t.Errorf("%s and %s do not overlap", tc.prefix, tc.loc)
		}
	}
}
