package server_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/cloudflare/circl/group"

	"github.com/silofl/silo"
	"github.com/silofl/silo/client"
	"github.com/silofl/silo/internal/psi"
	"github.com/silofl/silo/internal/runner"
	"github.com/silofl/silo/internal/server/servertest"
)

// wireLog records every byte of the runner protocol, both ways.
type wireLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

type teeWriter struct {
	http.ResponseWriter
	w *wireLog
}

func (t teeWriter) Write(p []byte) (int, error) {
	t.w.mu.Lock()
	t.w.buf.Write(p)
	t.w.mu.Unlock()
	return t.ResponseWriter.Write(p)
}

func (t teeWriter) Unwrap() http.ResponseWriter { return t.ResponseWriter }

func (w *wireLog) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/api/v1/runner/") {
			next.ServeHTTP(rw, r)
			return
		}
		body, _ := io.ReadAll(r.Body)
		w.mu.Lock()
		w.buf.WriteString(r.URL.String())
		w.buf.Write(body)
		w.mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(body))
		next.ServeHTTP(teeWriter{rw, w}, r)
	})
}

func (w *wireLog) bytes() []byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	return bytes.Clone(w.buf.Bytes())
}

// customer is one person of the linkage test data.
type customer struct {
	name, email, phone string // as written in the file ("" is null)
}

// linkageData is three organisations' customers with known overlaps, in
// the spellings each organisation happens to use.
func linkageData() map[string][]customer {
	email := func(i int) string { return fmt.Sprintf("user%03d@example.org", i) }
	phone := func(i int) string { return fmt.Sprintf("+44 20 7946 %04d", i) }
	data := map[string][]customer{}
	// bank: people 0–299; some capitalised, some padded; person 10 twice;
	// a row without any key; people 290–299 gave no email.
	for i := range 300 {
		c := customer{name: fmt.Sprintf("person-%d", i), email: email(i), phone: phone(i)}
		switch {
		case i >= 290:
			c.email = ""
		case i%7 == 0:
			c.email = strings.ToUpper(c.email[:1]) + c.email[1:]
		case i%5 == 0:
			c.email = "  " + c.email + " "
		}
		data["bank"] = append(data["bank"], c)
	}
	data["bank"] = append(data["bank"], customer{name: "person-10", email: email(10), phone: phone(10)}, customer{name: "nobody"})
	// telco: people 100–349, emails in capitals, phones with doubled spaces.
	for i := 100; i < 350; i++ {
		c := customer{name: fmt.Sprintf("person-%d", i), email: strings.ToUpper(email(i)), phone: strings.ReplaceAll(phone(i), " ", "  ")}
		if i%11 == 0 {
			c.phone = ""
		}
		data["telco"] = append(data["telco"], c)
	}
	// insurer: people 150–349 and ten of its own; phones only for some.
	for i := 150; i < 350; i++ {
		c := customer{name: fmt.Sprintf("person-%d", i), email: "\t" + email(i), phone: phone(i)}
		if i%3 == 0 {
			c.email = ""
		}
		data["insurer"] = append(data["insurer"], c)
	}
	for i := 1000; i < 1010; i++ {
		data["insurer"] = append(data["insurer"], customer{name: fmt.Sprintf("person-%d", i), email: email(i), phone: phone(i)})
	}
	return data
}

// expectedLinks is a plain reference of the linkage: values normalised
// (trim, lowercase, collapse spaces), each dataset's first row per value,
// keys in order, a row linked by an earlier key not linked again.
func expectedLinks(data map[string][]customer, order []string, keys []func(customer) string) int {
	norm := func(s string) string { return strings.Join(strings.Fields(strings.ToLower(strings.TrimSpace(s))), " ") }
	used := map[string]map[int]bool{}
	for _, ds := range order {
		used[ds] = map[int]bool{}
	}
	linked := 0
	for _, key := range keys {
		first := map[string]map[string]int{}
		for _, ds := range order {
			first[ds] = map[string]int{}
			for row, c := range data[ds] {
				v := norm(key(c))
				if _, seen := first[ds][v]; v != "" && !seen {
					first[ds][v] = row
				}
			}
		}
	next:
		for v, row0 := range first[order[0]] {
			rows := []int{row0}
			for _, ds := range order[1:] {
				r, ok := first[ds][v]
				if !ok {
					continue next
				}
				rows = append(rows, r)
			}
			for i, ds := range order {
				if used[ds][rows[i]] {
					continue next
				}
			}
			for i, ds := range order {
				used[ds][rows[i]] = true
			}
			linked++
		}
	}
	return linked
}

// linkageFederation is a server with a runner per organisation, each with
// its customers file (email and phone identifier columns) registered.
type linkageFederation struct {
	*env
	api   *client.Client
	dc    *client.Client
	roots map[string]string
	stops map[string]func()
	wire  *wireLog
	data  map[string][]customer
}

func newLinkageFederation(t *testing.T, orgs ...string) *linkageFederation {
	e := servertest.New(t)
	f := &linkageFederation{env: envOf(e), wire: &wireLog{}, roots: map[string]string{}, stops: map[string]func(){}, data: linkageData()}
	e.TS.Config.Handler = f.wire.wrap(e.TS.Config.Handler)
	ag := servertest.NewAgents(t, e)
	admin := client.New(e.TS.URL, e.Admin)
	f.dc = client.New(e.TS.URL, e.AddUser("dc@example.org", "data_custodian"))
	f.api = client.New(e.TS.URL, e.AddUser("mb@example.org", "model_builder"))
	ctx := context.Background()
	for _, org := range orgs {
		root := t.TempDir()
		var b bytes.Buffer
		w := csv.NewWriter(&b)
		w.Write([]string{"name", "email", "phone", "spend"})
		for i, c := range f.data[org] {
			w.Write([]string{c.name, c.email, c.phone, fmt.Sprint(i % 97)})
		}
		w.Flush()
		if err := os.WriteFile(filepath.Join(root, "customers.csv"), b.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		r, err := admin.RegisterRunner(ctx, silo.RunnerSpec{Name: org + "-runner", Provider: silo.ProviderLocal, StoragePath: "file://" + root, VCPU: 2, MemoryGB: 1})
		if err != nil {
			t.Fatal(err)
		}
		f.stops[org] = ag.Start(ctx, org+"-runner", r.Token, root, 2, 1024)
		f.roots[org] = root
	}
	privacy := silo.DefaultPrivacyControls()
	privacy.IdentifierColumns = []string{"email", "phone"}
	for _, org := range orgs {
		servertest.Eventually(t, org+" online", func() bool { return servertest.RunnerStatus(t, admin, org+"-runner") == silo.RunnerOnline })
		if _, err := f.dc.RegisterDataset(ctx, silo.DatasetSpec{Name: org, Runner: org + "-runner", URI: "file://" + filepath.Join(f.roots[org], "customers.csv"), Privacy: &privacy}); err != nil {
			t.Fatal(err)
		}
		if d := servertest.WaitDataset(t, f.dc, org); d.Status != silo.DatasetConnected {
			t.Fatalf("dataset %s: %s %s", org, d.Status, d.Error)
		}
	}
	return f
}

func prlConfig(name string, datasets []string, edit func(m map[string]any)) json.RawMessage {
	ids := map[string][]string{}
	for _, d := range datasets {
		ids[d] = []string{"email"}
	}
	m := map[string]any{"name": name, "type": "prl", "datasets": datasets, "id_columns": ids, "normalize": []string{"trim", "lowercase", "collapse_spaces"}}
	if edit != nil {
		edit(m)
	}
	b, _ := json.Marshal(m)
	return b
}

// TestLinkageThreeParties links three organisations' customers by email,
// then phone, with case and white-space variants that normalisation must
// reconcile, and gets exactly the overlap a plain reference computes; each
// runner's linkage names the same people in the same order. Every byte the
// runners sent and received is searched for the identifiers, normalised or
// not, and for hashes of them anyone could recompute: none is there.
func TestLinkageThreeParties(t *testing.T) {
	orgs := []string{"bank", "telco", "insurer"}
	f := newLinkageFederation(t, orgs...)
	ctx := context.Background()
	keys := []map[string][]string{
		{"bank": {"email"}, "telco": {"email"}, "insurer": {"email"}},
		{"bank": {"phone"}, "telco": {"phone"}, "insurer": {"phone"}},
	}
	s, err := f.api.CreateSession(ctx, prlConfig("link-three", orgs, func(m map[string]any) { delete(m, "id_columns"); m["keys"] = keys }))
	if err != nil {
		t.Fatal(err)
	}
	s = waitSession(t, f.api, s.ID)
	if s.Status != silo.SessionCompleted {
		t.Fatalf("session %s: %s", s.Status, s.StatusReason)
	}
	want := expectedLinks(f.data, orgs, []func(customer) string{func(c customer) string { return c.email }, func(c customer) string { return c.phone }})
	emailOnly := expectedLinks(f.data, orgs, []func(customer) string{func(c customer) string { return c.email }})
	if want <= emailOnly || emailOnly < 50 {
		t.Fatalf("test data: %d linked by email, %d with phone too", emailOnly, want)
	}
	m, err := f.api.LinkageMetrics(ctx, s.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Clients) != 3 {
		t.Fatalf("metrics: %+v", m)
	}
	for i, c := range m.Clients {
		rows := int64(len(f.data[orgs[i]]))
		if c.Dataset != orgs[i] || c.NRecords != rows || c.NOverlappedRecords != int64(want) || c.FracOverlapped != float64(want)/float64(rows) {
			t.Errorf("metrics of %s: %+v, want %d of %d records linked", orgs[i], c, want, rows)
		}
	}
	if m.Clients[0].NDuplicateKeys != 2 || m.Clients[0].NNullKeys != 1 {
		t.Errorf("bank: %d duplicate keys (want 2: person 10's email and phone), %d rows without a key (want 1)", m.Clients[0].NDuplicateKeys, m.Clients[0].NNullKeys)
	}
	// The API's JSON is the documented shape.
	var raw map[string][]map[string]any
	f.do("GET", "/api/v1/sessions/"+s.ID+"/metrics", f.admin, nil, &raw)
	if _, ok := raw["federated"]; ok || len(raw["clients"]) != 3 || raw["clients"][0]["n_overlapped_records"] != float64(want) {
		t.Fatalf("metrics JSON: %v", raw)
	}

	// Each runner's linkage: the same people, in the same order.
	var names [][]string
	for _, org := range orgs {
		cfg := runner.Config{StorageRoot: f.roots[org]}
		l, err := cfg.Linkage(ctx, s.ID, org, "file://"+filepath.Join(f.roots[org], "customers.csv"))
		if err != nil {
			t.Fatal(err)
		}
		if len(l.Rows) != want || l.DatasetRows != int64(len(f.data[org])) {
			t.Fatalf("%s linkage: %d rows of %d", org, len(l.Rows), l.DatasetRows)
		}
		var ns []string
		for _, r := range l.Rows {
			ns = append(ns, f.data[org][r].name)
		}
		names = append(names, ns)
	}
	for i := range names[0] {
		if names[0][i] != names[1][i] || names[0][i] != names[2][i] {
			t.Fatalf("record %d of the common order: %s, %s, %s", i, names[0][i], names[1][i], names[2][i])
		}
	}
	if _, err := (&runner.Config{StorageRoot: f.roots["bank"]}).Linkage(ctx, s.ID, "telco", "file://"+filepath.Join(f.roots["bank"], "customers.csv")); err == nil {
		t.Fatal("a linkage of another dataset was read")
	}

	// Nothing identifying crossed the wire.
	wire := f.wire.bytes()
	if !bytes.Contains(wire, []byte(silo.TaskPRLReblind)) {
		t.Fatal("the recorder saw no linkage traffic")
	}
	for _, org := range orgs {
		for _, c := range f.data[org] {
			for k, v := range []string{c.email, c.phone} {
				if v == "" {
					continue
				}
				n := strings.Join(strings.Fields(strings.ToLower(v)), " ")
				for _, needle := range forms(s.ID, k, v, n) {
					if bytes.Contains(wire, needle) {
						t.Fatalf("the wire holds %q (a form of %s's %q)", needle, org, v)
					}
				}
			}
			if bytes.Contains(wire, []byte(c.name+",")) || bytes.Contains(wire, []byte(c.name+"\"")) {
				t.Fatalf("the wire holds %s's name", c.name)
			}
		}
	}
}

// forms are what an identifier could leak as: itself, normalised, its
// encodings, its plain hashes, and its hash to the group without a secret.
func forms(session string, key int, raw, norm string) [][]byte {
	msg := psi.AppendKey(nil, norm)
	point, _ := group.Ristretto255.HashToElement(msg, []byte(fmt.Sprintf("silo-prl-v1:%s:%d", session, key))).MarshalBinary()
	// It is the runners' own hash: blinding by 1 gives it.
	one, _ := psi.ParseScalar(append([]byte{1}, make([]byte, 31)...))
	if got := psi.NewHasher(fmt.Sprintf("%s:%d", session, key)).Blind(one, msg); !bytes.Equal(got[:], point) {
		panic("the reference hash to the group is not the runners'")
	}
	s256, s512 := sha256.Sum256([]byte(norm)), sha512.Sum512([]byte(norm))
	out := [][]byte{[]byte(raw), []byte(norm), msg, point, []byte(hex.EncodeToString(point)), []byte(base64.StdEncoding.EncodeToString(point)),
		s256[:16], s512[:16], []byte(hex.EncodeToString(s256[:])), []byte(base64.StdEncoding.EncodeToString([]byte(norm)))}
	if strings.Contains(raw, "\t") {
		out = append(out, []byte(strings.ReplaceAll(raw, "\t", `\t`)))
	}
	return out
}
