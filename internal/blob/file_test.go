package blob

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/silofl/silo"
)

// writeFiles creates files (path relative to dir: content) under dir.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func newFileStore(t *testing.T) (*FileStore, string) {
	t.Helper()
	root := filepath.Join(t.TempDir(), "root")
	writeFiles(t, root, map[string]string{
		"one.csv":                       "a,b\n1,2\n",
		"sales/part-2.csv":              "22",
		"sales/part-10.csv":             "1010",
		"sales/_SUCCESS":                "",
		"sales/.part-2.csv.crc":         "crc",
		"sales/_temporary/0/part-9.csv": "tmp",
		"sales/2024/q1.csv":             "q1",
		"sales/a..b.csv":                "dots",
		"sales-eu/x.csv":                "eu",
		"hidden-only/_SUCCESS":          "",
	})
	if err := os.Mkdir(filepath.Join(root, "empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	s, err := NewFileStore(root)
	if err != nil {
		t.Fatal(err)
	}
	return s, root
}

func wantCode(t *testing.T, err error, code string, contains ...string) {
	t.Helper()
	if got := silo.ErrorCode(err); got != code {
		t.Fatalf("error %v has code %q, want %q", err, got, code)
	}
	for _, c := range contains {
		if !strings.Contains(silo.ErrorMessage(err), c) {
			t.Fatalf("error %q does not contain %q", silo.ErrorMessage(err), c)
		}
	}
}

func TestFileStoreList(t *testing.T) {
	ctx := context.Background()
	s, root := newFileStore(t)

	got, err := s.List(ctx, root+"/sales")
	if err != nil {
		t.Fatal(err)
	}
	want := []Object{
		{root + "/sales/2024/q1.csv", 2},
		{root + "/sales/a..b.csv", 4},
		{root + "/sales/part-10.csv", 4},
		{root + "/sales/part-2.csv", 2},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("List(sales) (-want +got):\n%s", diff)
	}
	// A trailing slash and a relative path name the same folder.
	for _, p := range []string{root + "/sales/", "sales", "sales/"} {
		if got2, err := s.List(ctx, p); err != nil || !cmp.Equal(got, got2) {
			t.Errorf("List(%q) = %v, %v; want the same as for the folder", p, got2, err)
		}
	}

	got, err = s.List(ctx, root+"/one.csv")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]Object{{root + "/one.csv", 8}}, got); diff != "" {
		t.Errorf("List(one.csv) (-want +got):\n%s", diff)
	}
	// A hidden file named directly is what was asked for.
	if got, err := s.List(ctx, root+"/sales/_SUCCESS"); err != nil || len(got) != 1 {
		t.Errorf("List(_SUCCESS) = %v, %v; want the file", got, err)
	}

	_, err = s.List(ctx, root+"/one.csv/")
	wantCode(t, err, silo.EINVALID, "is a file, not a folder")
	_, err = s.List(ctx, root+"/missing.csv")
	wantCode(t, err, silo.ENOTFOUND, "no file or folder at file://"+root+"/missing.csv")
	_, err = s.List(ctx, root+"/one.csv/x")
	wantCode(t, err, silo.ENOTFOUND)
	_, err = s.List(ctx, root+"/empty")
	wantCode(t, err, silo.ENOTFOUND, "no file or folder at")
	_, err = s.List(ctx, root+"/hidden-only")
	wantCode(t, err, silo.ENOTFOUND, "only hidden files")

	// The whole root, named or as "".
	for _, p := range []string{root, root + "/", ""} {
		if all, err := s.List(ctx, p); err != nil || len(all) != 6 {
			t.Errorf("List(%q) = %v, %v; want 6 files", p, all, err)
		}
	}
}

func TestFileStoreListCanceled(t *testing.T) {
	s, root := newFileStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.List(ctx, root); !errors.Is(err, context.Canceled) {
		t.Fatalf("List with a canceled context: %v", err)
	}
}

func TestFileStoreOpenAndReaderAt(t *testing.T) {
	ctx := context.Background()
	s, root := newFileStore(t)
	rc, err := s.Open(ctx, root+"/one.csv")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if string(b) != "a,b\n1,2\n" {
		t.Fatalf("Open read %q", b)
	}
	_, err = s.Open(ctx, root+"/sales")
	wantCode(t, err, silo.EINVALID, "folder")
	_, err = s.Open(ctx, root+"/nope")
	wantCode(t, err, silo.ENOTFOUND)

	objs, err := s.List(ctx, root+"/one.csv")
	if err != nil {
		t.Fatal(err)
	}
	testReaderAt(t, s.ReaderAt(ctx, objs[0]), []byte("a,b\n1,2\n"))
}

// testReaderAt checks ra, a reader of content, at offsets inside, across
// and past its end.
func testReaderAt(t *testing.T, ra io.ReaderAt, content []byte) {
	t.Helper()
	size := int64(len(content))
	for _, tc := range []struct {
		off  int64
		n    int
		want []byte
		eof  bool
	}{
		{0, 3, content[:3], false},
		{2, 4, content[2:6], false},
		{size - 3, 3, content[size-3:], false},
		{size - 2, 10, content[size-2:], true},
		{size, 1, nil, true},
		{size + 5, 1, nil, true},
	} {
		p := make([]byte, tc.n)
		n, err := ra.ReadAt(p, tc.off)
		if !bytes.Equal(p[:n], tc.want) {
			t.Errorf("ReadAt(%d bytes at %d) = %q, want %q", tc.n, tc.off, p[:n], tc.want)
		}
		if tc.eof && err != io.EOF || !tc.eof && err != nil {
			t.Errorf("ReadAt(%d bytes at %d) error %v, want EOF %v", tc.n, tc.off, err, tc.eof)
		}
	}
}

func TestFileStorePut(t *testing.T) {
	ctx := context.Background()
	s, root := newFileStore(t)
	if err := s.Put(ctx, root+"/predictions/run-1/out.csv", strings.NewReader("id,prediction\n1,0\n")); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "predictions/run-1/out.csv", strings.NewReader("id,prediction\n1,1\n")); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "predictions/run-1/out.csv"))
	if err != nil || string(b) != "id,prediction\n1,1\n" {
		t.Fatalf("after Put: %q, %v", b, err)
	}
	entries, _ := os.ReadDir(filepath.Join(root, "predictions/run-1"))
	if len(entries) != 1 {
		t.Fatalf("predictions folder holds %v, want only out.csv (no temporary files)", entries)
	}

	// A failing reader leaves neither a partial file nor a temporary one.
	err = s.Put(ctx, root+"/predictions/run-1/bad.csv", io.MultiReader(strings.NewReader("partial"), errReader{}))
	if err == nil {
		t.Fatal("Put from a failing reader succeeded")
	}
	if entries, _ := os.ReadDir(filepath.Join(root, "predictions/run-1")); len(entries) != 1 {
		t.Fatalf("after a failed Put the folder holds %v", entries)
	}
	// The old content stays until the new is complete.
	err = s.Put(ctx, root+"/one.csv", io.MultiReader(strings.NewReader("x"), errReader{}))
	if err == nil {
		t.Fatal("Put from a failing reader succeeded")
	}
	if b, _ := os.ReadFile(filepath.Join(root, "one.csv")); string(b) != "a,b\n1,2\n" {
		t.Fatalf("a failed Put changed one.csv to %q", b)
	}

	wantCode(t, s.Put(ctx, root+"/predictions/", strings.NewReader("")), silo.EINVALID, "folder")
	wantCode(t, s.Put(ctx, root+"/sales", strings.NewReader("")), silo.EINVALID, "folder")
	wantCode(t, s.Put(ctx, root+"/one.csv/x.csv", strings.NewReader("")), silo.EINVALID, "in the way")
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }

// TestFileStoreConfinement tries every way out of the storage root.
func TestFileStoreConfinement(t *testing.T) {
	ctx := context.Background()
	s, root := newFileStore(t)
	outside := filepath.Join(filepath.Dir(root), "outside")
	writeFiles(t, outside, map[string]string{"secret.csv": "secret", "dir/s.csv": "s"})
	writeFiles(t, root, map[string]string{"inner/real.csv": "ok"})
	for link, target := range map[string]string{
		"etc":                  "/etc",                                 // a link to /etc
		"passwd.csv":           "/etc/passwd",                          // a link to a file outside
		"out":                  outside,                                // a linked folder outside
		"rel-out":              "../outside/secret.csv",                // relative, outside
		"inner/in.csv":         filepath.Join(root, "inner/real.csv"),  // absolute, inside: fine
		"inner/rel-in.csv":     "real.csv",                             // relative, inside: fine
		"inner-link":           "inner",                                // a linked folder inside: fine
		"mixed/leak.csv":       filepath.Join(outside, "secret.csv"),   // inside a listed folder
		"mixed/ok.csv":         filepath.Join(root, "one.csv"),         // inside a listed folder: fine
		"loop/self":            "..",                                   // a cycle
		"dangling/nothing.csv": filepath.Join(root, "nonexistent.csv"), // broken
	} {
		p := filepath.Join(root, link)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
	}
	writeFiles(t, root, map[string]string{"loop/x.csv": "x"})

	escapes := []string{
		root + "/../outside/secret.csv",
		"../outside/secret.csv",
		"/etc/passwd",
		outside + "/secret.csv",
		root + "/etc/passwd",
		root + "/etc",
		root + "/passwd.csv",
		root + "/out",
		root + "/out/secret.csv",
		root + "/out/dir/",
		root + "/rel-out",
		root + "x/secret.csv", // a sibling whose name starts like the root
	}
	for _, p := range escapes {
		_, err := s.List(ctx, p)
		wantCode(t, err, silo.EFORBIDDEN, "escapes the runner's storage root "+root)
		if strings.Contains(silo.ErrorMessage(err), outside) && !strings.Contains(p, outside) {
			t.Errorf("List(%q): %q tells where the link leads", p, silo.ErrorMessage(err))
		}
		_, err = s.Open(ctx, p)
		wantCode(t, err, silo.EFORBIDDEN, "escapes")
		_, err = s.ReaderAt(ctx, Object{Key: p, Size: 10}).ReadAt(make([]byte, 2), 0)
		wantCode(t, err, silo.EFORBIDDEN, "escapes")
	}
	// A link found while listing a folder is checked too.
	_, err := s.List(ctx, root+"/mixed")
	wantCode(t, err, silo.EFORBIDDEN, "file://"+root+"/mixed/leak.csv escapes the runner's storage root "+root+" through a symbolic link")

	for _, p := range []string{
		root + "/../outside/new.csv", "/tmp/new.csv", root + "/out/new.csv", root + "/out/sub/new.csv",
		root + "/etc/new.csv", root + "/passwd.csv",
	} {
		wantCode(t, s.Put(ctx, p, strings.NewReader("x")), silo.EFORBIDDEN, "escapes")
	}
	if b, _ := os.ReadFile("/etc/passwd"); len(b) == 0 {
		t.Fatal("cannot read /etc/passwd to check it is unchanged")
	}
	if _, err := os.Stat(filepath.Join(outside, "new.csv")); err == nil {
		t.Fatal("Put wrote outside the root")
	}

	// Through URIs, as the runner gets them: percent-encoded dots are
	// refused by ParseURI, and by the store if they reach it.
	for _, raw := range []string{"file://" + root + "/%2e%2e/outside/secret.csv", "file://" + root + "/..%2Foutside"} {
		if _, err := ParseURI(raw); silo.ErrorCode(err) != silo.EINVALID {
			t.Errorf("ParseURI(%q) = %v, want invalid", raw, err)
		}
	}
	u, err := ParseURI("file:///etc/passwd")
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.List(ctx, u.Path)
	wantCode(t, err, silo.EFORBIDDEN, "file:///etc/passwd escapes")

	// Links that stay inside are followed.
	for p, want := range map[string]int{
		root + "/inner/in.csv": 1, root + "/inner/rel-in.csv": 1, root + "/inner-link": 3, root + "/inner-link/real.csv": 1,
	} {
		if got, err := s.List(ctx, p); err != nil || len(got) != want {
			t.Errorf("List(%q) = %v, %v; want %d objects", p, got, err, want)
		}
	}
	if rc, err := s.Open(ctx, root+"/inner/in.csv"); err != nil {
		t.Errorf("Open through a link inside: %v", err)
	} else {
		rc.Close()
	}
	// Writing through a link inside replaces its target, and keeps the link.
	if err := s.Put(ctx, root+"/inner/in.csv", strings.NewReader("new")); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "inner/real.csv")); string(b) != "new" {
		t.Errorf("Put through a link inside wrote %q to its target", b)
	}
	if fi, err := os.Lstat(filepath.Join(root, "inner/in.csv")); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("Put through a link replaced the link: %v", err)
	}
	wantCode(t, s.Put(ctx, root+"/dangling/nothing.csv", strings.NewReader("x")), silo.EINVALID, "symbolic link to nothing")

	// A cycle ends; a broken link is reported.
	if got, err := s.List(ctx, root+"/loop"); err == nil {
		t.Errorf("List(loop) = %v, want the escape through loop/self refused", got)
	}
	_, err = s.List(ctx, root+"/dangling")
	wantCode(t, err, silo.ENOTFOUND, "symbolic link to nothing")
}

func TestFileStoreCycleInside(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	writeFiles(t, root, map[string]string{"d/x.csv": "x", "d/sub/y.csv": "y"})
	if err := os.Symlink(filepath.Join(root, "d"), filepath.Join(root, "d/sub/back")); err != nil {
		t.Fatal(err)
	}
	s, err := NewFileStore(root)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.List(ctx, root+"/d")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("List through a cycle = %v, want x.csv and sub/y.csv once each", got)
	}
}

// TestFileStoreLinkedRoot: the root itself may be a link (e.g. /data ->
// /mnt/data); keys stay under the root as configured.
func TestFileStoreLinkedRoot(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"real/x.csv": "x"})
	root := filepath.Join(dir, "data")
	if err := os.Symlink(filepath.Join(dir, "real"), root); err != nil {
		t.Fatal(err)
	}
	s, err := NewFileStore(root)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.List(ctx, root)
	if err != nil || !cmp.Equal(got, []Object{{root + "/x.csv", 1}}) {
		t.Fatalf("List = %v, %v", got, err)
	}
	if err := s.Put(ctx, root+"/p/y.csv", strings.NewReader("y")); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "real/p/y.csv")); string(b) != "y" {
		t.Fatalf("Put through a linked root wrote %q", b)
	}
}

func TestNewFileStore(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"f": "x"})
	for _, root := range []string{filepath.Join(dir, "missing"), filepath.Join(dir, "f")} {
		_, err := NewFileStore(root)
		wantCode(t, err, silo.EINVALID, root)
	}
}

func TestOpenFile(t *testing.T) {
	ctx := context.Background()
	_, root := newFileStore(t)
	u, err := ParseURI("file://" + root + "/one.csv")
	if err != nil {
		t.Fatal(err)
	}
	st, err := Open(ctx, u, Config{FileRoot: root})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := st.List(ctx, u.Path); err != nil || len(got) != 1 {
		t.Fatalf("List = %v, %v", got, err)
	}
	_, err = Open(ctx, u, Config{})
	wantCode(t, err, silo.EINVALID, "--storage-root")
}

// TestFileStoreSwappedLink: a folder replaced by a link to the outside
// between the check and the open (a race) is still refused.
func TestFileStoreSwappedLink(t *testing.T) {
	dir := t.TempDir()
	root, outside := filepath.Join(dir, "root"), filepath.Join(dir, "outside")
	writeFiles(t, dir, map[string]string{"root/d/x.csv": "inside", "outside/x.csv": "secret"})
	s, err := NewFileStore(root)
	if err != nil {
		t.Fatal(err)
	}
	abs, rel, err := s.resolve(root + "/d/x.csv")
	if err != nil {
		t.Fatal(err)
	}
	// The race: d becomes a link, absolute or relative, to the outside.
	for _, target := range []string{outside, "../outside"} {
		os.RemoveAll(filepath.Join(root, "d"))
		if err := os.Symlink(target, filepath.Join(root, "d")); err != nil {
			t.Fatal(err)
		}
		f, err := s.open(abs, rel)
		if err == nil {
			b, _ := io.ReadAll(f)
			f.Close()
			t.Fatalf("opened %q through a link to %s swapped in after the check", b, target)
		}
		wantCode(t, err, silo.EFORBIDDEN, "escapes")
	}
}

// TestFileStoreDenied: a folder the runner keeps its own state in is never
// data, whatever path or link leads to it: not listed, opened or written.
func TestFileStoreDenied(t *testing.T) {
	ctx := context.Background()
	_, root := newFileStore(t)
	state := filepath.Join(root, "state")
	writeFiles(t, state, map[string]string{"locations/x.json": `{"ledger":{}}`})
	if err := os.Symlink(state, filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(state, filepath.Join(root, "sales", "inner")); err != nil {
		t.Fatal(err)
	}
	u, _ := ParseURI("file://" + root)
	st, err := Open(ctx, u, Config{FileRoot: root, FileDeny: []string{state}})
	if err != nil {
		t.Fatal(err)
	}
	fs := st.(*FileStore)
	for _, p := range []string{state, state + "/locations/x.json", root + "/link/locations/x.json", root + "/link"} {
		_, err := fs.List(ctx, p)
		wantCode(t, err, silo.EFORBIDDEN, "the runner's own state")
		_, err = fs.Open(ctx, p)
		wantCode(t, err, silo.EFORBIDDEN, "the runner's own state")
		if _, err := fs.RealPath(p); silo.ErrorCode(err) != silo.EFORBIDDEN {
			t.Errorf("RealPath(%s) = %v", p, err)
		}
	}
	wantCode(t, fs.Put(ctx, state+"/locations/x.json", strings.NewReader("x")), silo.EFORBIDDEN, "the runner's own state")
	wantCode(t, fs.Put(ctx, root+"/link/new.json", strings.NewReader("x")), silo.EFORBIDDEN, "the runner's own state")
	// Listing the whole root, or a folder holding a link to it, skips it.
	for _, p := range []string{root, root + "/sales"} {
		objs, err := fs.List(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range objs {
			if strings.Contains(o.Key, "locations") {
				t.Errorf("listing %s shows %s", p, o.Key)
			}
		}
	}
	// RealPath names data by where it is, links resolved.
	if err := os.Symlink(filepath.Join(root, "one.csv"), filepath.Join(root, "alias.csv")); err != nil {
		t.Fatal(err)
	}
	a, err1 := fs.RealPath(root + "/alias.csv")
	b, err2 := fs.RealPath(root + "/one.csv")
	if err1 != nil || err2 != nil || a != b {
		t.Fatalf("RealPath: %q %v, %q %v", a, err1, b, err2)
	}
}
