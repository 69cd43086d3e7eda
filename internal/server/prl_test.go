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
	"time"

	"github.com/cloudflare/circl/group"

	"github.com/silofl/silo"
	"github.com/silofl/silo/client"
	"github.com/silofl/silo/internal/psi"
	"github.com/silofl/silo/internal/runner"
	"github.com/silofl/silo/internal/server"
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
	api    *client.Client
	dc     *client.Client
	roots  map[string]string
	tokens map[string]string
	stops  map[string]func()
	wire   *wireLog
	data   map[string][]customer
}

func newLinkageFederation(t *testing.T, orgs ...string) *linkageFederation {
	return newLinkageFederationWith(t, nil, orgs...)
}

// newLinkageFederationWith lets edit set each dataset's privacy controls.
func newLinkageFederationWith(t *testing.T, edit func(org string, p *silo.PrivacyControls), orgs ...string) *linkageFederation {
	return linkageFederationOn(t, servertest.New(t), edit, orgs...)
}

// linkageFederationOn is newLinkageFederationWith on a server the test
// started.
func linkageFederationOn(t *testing.T, e *servertest.Env, edit func(org string, p *silo.PrivacyControls), orgs ...string) *linkageFederation {
	f := &linkageFederation{env: envOf(e), wire: &wireLog{}, roots: map[string]string{}, tokens: map[string]string{}, stops: map[string]func(){}, data: linkageData()}
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
		f.roots[org], f.tokens[org] = root, r.Token
	}
	for _, org := range orgs {
		privacy := silo.DefaultPrivacyControls()
		privacy.IdentifierColumns = []string{"email", "phone"}
		if edit != nil {
			edit(org, &privacy)
		}
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

// TestLinkageRefusals: a Model Builder cannot link on a column that is not
// an identifier, on a column that does not exist, on a dataset that does
// not allow prl, or with two datasets on one runner; each is refused when
// the session is created, saying what to fix.
func TestLinkageRefusals(t *testing.T) {
	f := newLinkageFederationWith(t, func(org string, p *silo.PrivacyControls) {
		if org == "insurer" {
			p.AllowedSessionTypes = []string{"hfl", "eda"}
		}
	}, "bank", "telco", "insurer")
	ctx := context.Background()
	// Other data (an older extract) on the bank's runner.
	copyPrivacy := silo.DefaultPrivacyControls()
	copyPrivacy.IdentifierColumns = []string{"email"}
	older, _ := os.ReadFile(filepath.Join(f.roots["bank"], "customers.csv"))
	if err := os.WriteFile(filepath.Join(f.roots["bank"], "customers-2025.csv"), older, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := f.dc.RegisterDataset(ctx, silo.DatasetSpec{Name: "bank_copy", Runner: "bank-runner", URI: "file://" + filepath.Join(f.roots["bank"], "customers-2025.csv"),
		Privacy: &copyPrivacy}); err != nil {
		t.Fatal(err)
	}
	servertest.WaitDataset(t, f.dc, "bank_copy")
	for _, tc := range []struct {
		datasets []string
		edit     func(m map[string]any)
		field    string
		want     string
	}{
		{[]string{"bank", "telco"}, func(m map[string]any) { m["id_columns"].(map[string][]string)["telco"] = []string{"spend"} }, "id_columns", "column spend of dataset telco is not an identifier column"},
		{[]string{"bank", "telco"}, func(m map[string]any) { m["id_columns"].(map[string][]string)["bank"] = []string{"mail"} }, "id_columns", "dataset bank has no column mail"},
		{[]string{"bank", "insurer"}, nil, "type", "dataset insurer does not allow prl sessions"},
		{[]string{"bank", "bank_copy"}, nil, "datasets", "are on the same runner (bank-runner)"},
		{[]string{"bank", "telco"}, func(m map[string]any) { m["rounds"] = 3 }, "rounds", "belongs to hfl (training) sessions, not prl"},
		{[]string{"bank"}, nil, "datasets", "two or more datasets"},
	} {
		_, err := f.api.CreateSession(ctx, prlConfig("refused", tc.datasets, tc.edit))
		if e, ok := err.(*silo.Error); !ok || e.Field != tc.field || !strings.Contains(e.Message, tc.want) {
			t.Errorf("%v: got %v, want field %s saying %q", tc.datasets, err, tc.field, tc.want)
		}
	}
}

// TestLinkageTooSmall: an overlap smaller than a dataset's
// min_records_per_aggregate fails the session with that reason (not the
// count), and no runner keeps a linkage.
func TestLinkageTooSmall(t *testing.T) {
	f := newLinkageFederationWith(t, func(org string, p *silo.PrivacyControls) {
		if org == "telco" {
			p.MinRecordsPerAggregate = 1000
		}
	}, "bank", "telco")
	ctx := context.Background()
	s, err := f.api.CreateSession(ctx, prlConfig("too-small", []string{"bank", "telco"}, nil))
	if err != nil {
		t.Fatal(err)
	}
	s = waitSession(t, f.api, s.ID)
	if s.Status != silo.SessionFailed || !strings.Contains(s.StatusReason, "fewer records in common than dataset telco's min_records_per_aggregate (1000): no linkage was kept") {
		t.Fatalf("session %s: %s", s.Status, s.StatusReason)
	}
	for _, org := range []string{"bank", "telco"} {
		if _, err := os.Stat(filepath.Join(f.roots[org], "_linkage")); !os.IsNotExist(err) {
			t.Errorf("%s kept a linkage: %v", org, err)
		}
		servertest.Eventually(t, org+"'s secrets removed", func() bool {
			_, err := os.Stat(filepath.Join(f.roots[org], ".silo", "prl", s.ID))
			return os.IsNotExist(err)
		})
	}
	if m, err := f.api.LinkageMetrics(ctx, s.ID); err != nil || len(m.Clients) != 0 {
		t.Fatalf("a failed linkage's metrics: %+v, %v", m, err)
	}
}

// hostileRunner answers its runner's tasks itself: blind tasks with what
// answer returns, anything else never.
func hostileRunner(t *testing.T, f *linkageFederation, org string, answer func(t *silo.Task) (silo.PRLBlindOutput, client.Parts)) {
	f.stops[org]()
	// The stopped agent's last long-poll (2 s) may still be open on the
	// server: a task it claimed would reach no one, and with the tests'
	// frozen clock never be found lost. Let it run out first.
	time.Sleep(3 * time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	c := client.New(f.ts.URL, f.tokens[org])
	go func() {
		for ctx.Err() == nil {
			c.Heartbeat(ctx, silo.Heartbeat{ProtocolVersion: silo.ProtocolVersion, AgentVersion: silo.Version, VCPU: 2, MemoryMB: 1024})
			task, _, err := c.PollTask(ctx, time.Second, nil)
			if err != nil && ctx.Err() == nil {
				t.Logf("hostile poll: %v", err)
			}
			if err != nil || task == nil || task.Type != silo.TaskPRLBlind {
				continue
			}
			out, parts := answer(task)
			b, _ := json.Marshal(out)
			if _, _, err := c.ReportTask(ctx, task.ID, silo.TaskResult{Status: silo.TaskSucceeded, Output: b}, parts, nil); err != nil && ctx.Err() == nil {
				t.Logf("hostile report: %v", err)
			}
		}
	}()
}

// TestLinkageHostileRunner: a runner that sends a set of another size than
// its counts, or values that are not group elements, fails the session
// with a reason that names it; the honest runner never re-blinds garbage.
func TestLinkageHostileRunner(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  []byte
		want string
	}{
		{"wrong size", bytes.Repeat([]byte{1}, 4*psi.Size), "dataset telco's runner sent a set/0 part of 128 bytes where its counts make 160: refused"},
		{"not group elements", bytes.Repeat([]byte{0xff}, 5*psi.Size), "not ristretto255 group elements"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newLinkageFederation(t, "bank", "telco")
			hostileRunner(t, f, "telco", func(*silo.Task) (silo.PRLBlindOutput, client.Parts) {
				return silo.PRLBlindOutput{Rows: 5, Keys: []silo.PRLKeyCounts{{Records: 5}}},
					client.Parts{silo.PRLSetPart(0): tc.set, silo.PRLTagsPart(0): make([]byte, 20)}
			})
			s, err := f.api.CreateSession(context.Background(), prlConfig("hostile", []string{"bank", "telco"}, nil))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if t.Failed() {
					for _, typ := range []string{silo.TaskPRLBlind, silo.TaskPRLReblind} {
						tasks, _ := f.db.ListSessionTasks(context.Background(), s.ID, map[string]int{silo.TaskPRLBlind: 1, silo.TaskPRLReblind: 2}[typ], typ)
						for _, x := range tasks {
							t.Logf("task %s %s of %s: %s %s", x.ID, x.Type, x.Dataset, x.Status, x.Error)
						}
					}
				}
			})
			s = waitSessionEnd(t, f.api, s.ID, nil)
			if s.Status != silo.SessionFailed || !strings.Contains(s.StatusReason, tc.want) {
				t.Fatalf("session %s: %s", s.Status, s.StatusReason)
			}
		})
	}
}

// TestLinkageCancelCleansUp: cancelling a linkage while a runner blinds
// stops its task, and the runners remove their secret and every temporary
// file of the session.
func TestLinkageCancelCleansUp(t *testing.T) {
	// A short heartbeat: cancellations reach runners sooner.
	f := linkageFederationOn(t, servertest.New(t, func(s *server.Server) { s.HeartbeatInterval = time.Second }), nil, "bank", "telco")
	ctx := context.Background()
	// A dataset large enough that its blinding is still running when the
	// session is cancelled.
	var b bytes.Buffer
	b.WriteString("email,phone,spend\n")
	for i := range 300000 {
		fmt.Fprintf(&b, "someone%d@example.org,,%d\n", i, i%10)
	}
	path := filepath.Join(f.roots["bank"], "big.csv")
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	privacy := silo.DefaultPrivacyControls()
	privacy.IdentifierColumns = []string{"email"}
	if _, err := f.dc.RegisterDataset(ctx, silo.DatasetSpec{Name: "bank_big", Runner: "bank-runner", URI: "file://" + path, Privacy: &privacy}); err != nil {
		t.Fatal(err)
	}
	servertest.WaitDataset(t, f.dc, "bank_big")
	s, err := f.api.CreateSession(ctx, prlConfig("cancel-me", []string{"bank_big", "telco"}, nil))
	if err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(f.roots["bank"], ".silo", "prl", s.ID)
	tmp := filepath.Join(f.roots["bank"], ".silo", "tmp")
	servertest.Eventually(t, "the bank's runner blinding", func() bool {
		entries, _ := os.ReadDir(tmp)
		_, err := os.Stat(state)
		return err == nil && len(entries) > 0
	})
	// Its progress shows on the session while it runs.
	var got *silo.Session
	servertest.Eventually(t, "the linkage's progress", func() bool {
		got, err = f.api.GetSession(ctx, s.ID)
		return err == nil && got.Progress != nil && got.Progress.Done > 0
	})
	if p := got.Progress; p.Step != silo.TaskPRLBlind || p.Unit != "records blinded" || p.Total < 300000 || p.Done >= p.Total {
		t.Errorf("a running linkage's progress: %+v", p)
	}
	if _, err := f.api.CancelSession(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	servertest.Eventually(t, "the runners' state and temporary files removed", func() bool {
		entries, _ := os.ReadDir(tmp)
		_, err := os.Stat(state)
		return os.IsNotExist(err) && len(entries) == 0
	})
	if _, err := os.Stat(filepath.Join(f.roots["telco"], ".silo", "prl", s.ID)); !os.IsNotExist(err) {
		t.Errorf("telco's state of the cancelled session: %v", err)
	}
}
