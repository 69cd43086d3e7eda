package blob

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/silofl/silo"
)

// FileStore is a local runner's storage: the directory tree under its
// storage root. It is the runner's last line of defence for the data
// owner, so every path must stay inside the root: ".." segments and paths
// outside the root are refused before the file system is touched, and a
// path is resolved with filepath.EvalSymlinks and refused if a symbolic
// link takes it outside (a link inside pointing inside is fine); these
// checks give the error messages. Every file operation then goes through an
// os.Root opened on the resolved root, on the resolved path: it opens each
// path component with O_NOFOLLOW and follows only links that stay inside,
// so a link swapped in after the check cannot lead outside either.
//
// Keys are absolute paths, as in file URIs; a relative key is taken
// relative to the root, and "" is the root. A FileStore holds no open files
// and needs no Close.
type FileStore struct {
	root   string   // absolute and clean, as configured: keys and messages use it
	real   string   // root with symbolic links resolved: confinement is checked against it
	denied []string // resolved folders that are never data (Config.FileDeny)
}

// deny adds folders the store never lists, opens or writes.
func (s *FileStore) deny(dirs ...string) {
	for _, d := range dirs {
		abs, err := filepath.Abs(d)
		if err != nil {
			continue
		}
		if real, err := filepath.EvalSymlinks(abs); err == nil {
			abs = real
		}
		s.denied = append(s.denied, abs)
	}
}

// isDenied reports whether rel (relative to the real root, links resolved)
// is in a denied folder.
func (s *FileStore) isDenied(rel string) bool {
	p := filepath.Join(s.real, rel)
	for _, d := range s.denied {
		if within(d, p) {
			return true
		}
	}
	return false
}

// errDenied is the error for a path in a denied folder.
func (s *FileStore) errDenied(p string) error {
	return silo.Errorf(silo.EFORBIDDEN, "%s is the runner's own state, not data: it can never be a dataset or be written by a task", s.uri(p))
}

// RealPath returns where key leads with every symbolic link resolved: the
// data's canonical location, which privacy controls bind to. It fails as
// reads do for a path outside the root, missing or denied.
func (s *FileStore) RealPath(key string) (string, error) {
	_, rel, err := s.resolve(key)
	if err != nil {
		return "", err
	}
	return filepath.Join(s.real, rel), nil
}

// NewFileStore returns the store rooted at root, which must be an existing
// directory.
func NewFileStore(root string) (*FileStore, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, silo.Errorf(silo.EINVALID, "storage root %q: %v", root, err)
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return nil, silo.Errorf(silo.EINVALID, "storage root %s does not exist or cannot be read (%v): create it or fix the runner's --storage-root", abs, pathErr(err))
	}
	if fi, err := os.Stat(real); err != nil || !fi.IsDir() {
		return nil, silo.Errorf(silo.EINVALID, "storage root %s is not a directory: give the runner's data folder as --storage-root", abs)
	}
	return &FileStore{root: abs, real: real}, nil
}

// List implements Store. Inside a folder, symbolic links are followed when
// they stay inside the root (each link found is checked) and refused
// otherwise; each folder is listed once even if links reach it twice; and
// what is neither a regular file nor a folder (pipes, devices, sockets) is
// skipped.
func (s *FileStore) List(ctx context.Context, path string) ([]Object, error) {
	abs, rel, err := s.resolve(path)
	if err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(s.real)
	if err != nil {
		return nil, s.fail("opening the storage root", s.root, err)
	}
	defer root.Close()
	fi, err := root.Stat(rel)
	if err != nil {
		return nil, s.fail("reading", abs, err)
	}
	switch {
	case fi.Mode().IsRegular():
		if strings.HasSuffix(path, "/") {
			return nil, silo.Errorf(silo.EINVALID, "%s is a file, not a folder: remove the trailing /", s.uri(abs))
		}
		return []Object{{Key: abs, Size: fi.Size()}}, nil
	case !fi.IsDir():
		return nil, silo.Errorf(silo.EINVALID, "%s is neither a file nor a folder", s.uri(abs))
	}
	w := walker{s: s, root: root, seen: map[string]bool{rel: true}}
	if err := w.walk(ctx, rel, abs); err != nil {
		return nil, err
	}
	if len(w.objs) == 0 {
		return nil, emptyFolder(s.uri(abs), w.hidden)
	}
	sortObjects(w.objs)
	return w.objs, nil
}

type walker struct {
	s      *FileStore
	root   *os.Root
	seen   map[string]bool // resolved folders listed, so link cycles end
	objs   []Object
	hidden int
}

// walk lists the folder rel (resolved, relative to the real root) whose
// key is key.
func (w *walker) walk(ctx context.Context, rel, key string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("listing %s: %w", w.s.uri(key), err)
	}
	d, err := w.root.Open(rel)
	if err != nil {
		return w.s.fail("listing", key, err)
	}
	entries, err := d.ReadDir(-1)
	_ = d.Close()
	if err != nil {
		return w.s.fail("listing", key, err)
	}
	for _, e := range entries { // sorted by name
		name := e.Name()
		if isHidden(name) || w.s.isDenied(filepath.Join(rel, name)) {
			w.hidden++
			continue
		}
		erel, ekey := filepath.Join(rel, name), strings.TrimSuffix(key, "/")+"/"+name
		var fi fs.FileInfo
		if e.Type()&fs.ModeSymlink != 0 {
			real, err := filepath.EvalSymlinks(filepath.Join(w.s.real, erel))
			if errors.Is(err, fs.ErrNotExist) {
				return silo.Errorf(silo.ENOTFOUND, "%s is a symbolic link to nothing: fix or remove it", w.s.uri(ekey))
			} else if err != nil {
				return w.s.fail("listing", ekey, err)
			}
			if !within(w.s.real, real) {
				return w.s.escaped(ekey, true)
			}
			erel, _ = filepath.Rel(w.s.real, real)
			if w.s.isDenied(erel) {
				w.hidden++
				continue
			}
			if fi, err = w.root.Stat(erel); err != nil {
				return w.s.fail("listing", ekey, err)
			}
		} else if fi, err = e.Info(); err != nil {
			return w.s.fail("listing", ekey, err)
		}
		switch {
		case fi.IsDir():
			if w.seen[erel] {
				continue
			}
			w.seen[erel] = true
			if err := w.walk(ctx, erel, ekey); err != nil {
				return err
			}
		case fi.Mode().IsRegular():
			w.objs = append(w.objs, Object{Key: ekey, Size: fi.Size()})
		}
	}
	return nil
}

// Open implements Store.
func (s *FileStore) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	abs, rel, err := s.resolve(key)
	if err != nil {
		return nil, err
	}
	return s.open(abs, rel)
}

func (s *FileStore) open(abs, rel string) (*os.File, error) {
	root, err := os.OpenRoot(s.real)
	if err != nil {
		return nil, s.fail("opening the storage root", s.root, err)
	}
	defer root.Close() // the file stays open
	f, err := root.Open(rel)
	if err != nil {
		return nil, s.fail("opening", abs, err)
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		_ = f.Close()
		return nil, silo.Errorf(silo.EINVALID, "%s is a folder or special file, not a data file", s.uri(abs))
	}
	return f, nil
}

// ReaderAt implements Store. The store holds no open file, so each ReadAt
// opens the file (resolved once) and closes it again.
func (s *FileStore) ReaderAt(ctx context.Context, obj Object) io.ReaderAt {
	return &fileReaderAt{ctx: ctx, s: s, key: obj.Key}
}

type fileReaderAt struct {
	ctx context.Context
	s   *FileStore
	key string

	once     sync.Once
	abs, rel string
	err      error
}

func (r *fileReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	r.once.Do(func() { r.abs, r.rel, r.err = r.s.resolve(r.key) })
	if r.err != nil {
		return 0, r.err
	}
	f, err := r.s.open(r.abs, r.rel)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return f.ReadAt(p, off)
}

// Put implements Store: it writes a hidden temporary file next to key
// (List skips it), syncs it and renames it over key, creating missing
// folders. Folders on the way are resolved and confined like reads.
func (s *FileStore) Put(ctx context.Context, key string, r io.Reader) error {
	abs, err := s.lexical(key)
	if err != nil {
		return err
	}
	if strings.HasSuffix(key, "/") || abs == s.root || abs == s.real {
		return silo.Errorf(silo.EINVALID, "cannot write %s: it names a folder; give a file name", s.uri(abs))
	}
	// An existing file is replaced where its links lead, as reads see it;
	// otherwise the folder is resolved.
	var relDir, name string
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		if !within(s.real, real) {
			return s.escaped(abs, true)
		}
		rel, _ := filepath.Rel(s.real, real)
		if rel == "." {
			return silo.Errorf(silo.EINVALID, "cannot write %s: it names a folder; give a file name", s.uri(abs))
		}
		if s.isDenied(rel) {
			return s.errDenied(abs)
		}
		relDir, name = filepath.Dir(rel), filepath.Base(rel)
	} else if fi, lerr := os.Lstat(abs); lerr == nil && fi.Mode()&fs.ModeSymlink != 0 {
		return silo.Errorf(silo.EINVALID, "cannot write %s: it is a symbolic link to nothing: fix or remove it", s.uri(abs))
	} else if relDir, err = s.resolveDir(filepath.Dir(abs)); err != nil {
		return err
	} else {
		name = filepath.Base(abs)
	}
	if s.isDenied(filepath.Join(relDir, name)) {
		return s.errDenied(abs)
	}
	root, err := os.OpenRoot(s.real)
	if err != nil {
		return s.fail("opening the storage root", s.root, err)
	}
	defer root.Close()
	if err := root.MkdirAll(relDir, 0o755); err != nil {
		if errors.Is(err, syscall.ENOTDIR) || errors.Is(err, syscall.EEXIST) {
			return silo.Errorf(silo.EINVALID, "cannot write %s: a file is in the way of its folder", s.uri(abs))
		}
		return s.fail("creating the folder of", abs, err)
	}
	var rnd [8]byte
	rand.Read(rnd[:])
	tmp := filepath.Join(relDir, "."+name+".tmp-"+hex.EncodeToString(rnd[:]))
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return s.fail("writing", abs, err)
	}
	_, err = io.Copy(f, ctxReader{ctx, r})
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = root.Rename(tmp, filepath.Join(relDir, name))
	}
	if err != nil {
		_ = root.Remove(tmp)
		if ctx.Err() != nil {
			return fmt.Errorf("writing %s: %w", s.uri(abs), ctx.Err())
		}
		return s.fail("writing", abs, err)
	}
	// Make the rename itself durable.
	if d, err := root.Open(relDir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

// lexical checks key without touching the file system and returns it as a
// clean absolute path inside the root.
func (s *FileStore) lexical(key string) (string, error) {
	if key == "" {
		return s.root, nil
	}
	if strings.ContainsRune(key, 0) {
		return "", silo.Errorf(silo.EINVALID, "path %q contains a NUL character", key)
	}
	if slices.Contains(strings.Split(key, "/"), "..") {
		return "", silo.Errorf(silo.EFORBIDDEN, "path %s escapes the runner's storage root %s: .. (a parent folder) is not allowed; give the full path of a file or folder inside %s", key, s.root, s.root)
	}
	abs := key
	if !filepath.IsAbs(abs) {
		abs = filepath.Join(s.root, abs)
	}
	abs = filepath.Clean(abs)
	if !within(s.root, abs) && !within(s.real, abs) {
		return "", s.escaped(abs, false)
	}
	return abs, nil
}

// resolve returns key as a clean absolute path and as a path relative to
// the real root with no symbolic links in it, or an error if it does not
// exist or resolves outside the root.
func (s *FileStore) resolve(key string) (abs, rel string, err error) {
	if abs, err = s.lexical(key); err != nil {
		return "", "", err
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return "", "", s.fail("reading", abs, err)
	}
	if !within(s.real, real) {
		return "", "", s.escaped(abs, true)
	}
	rel, _ = filepath.Rel(s.real, real)
	if s.isDenied(rel) {
		return "", "", s.errDenied(abs)
	}
	return abs, rel, nil
}

// resolveDir is resolve for a folder that may not exist yet: its deepest
// existing ancestor is resolved and confined, and the rest appended.
func (s *FileStore) resolveDir(dir string) (string, error) {
	var missing []string
	for d := dir; ; d = filepath.Dir(d) {
		real, err := filepath.EvalSymlinks(d)
		if errors.Is(err, fs.ErrNotExist) && d != s.root {
			missing = append(missing, filepath.Base(d))
			continue
		}
		if err != nil {
			return "", s.fail("writing in", dir, err)
		}
		if !within(s.real, real) {
			return "", s.escaped(dir, true)
		}
		rel, _ := filepath.Rel(s.real, real)
		slices.Reverse(missing)
		return filepath.Join(append([]string{rel}, missing...)...), nil
	}
}

// within reports whether p is root or below it; both are clean and absolute.
func within(root, p string) bool {
	return p == root || strings.HasPrefix(p, strings.TrimSuffix(root, "/")+"/")
}

func (s *FileStore) uri(p string) string { return URI{Scheme: SchemeFile, Path: p}.String() }

// escaped is the error for a path outside the root. It never says where a
// link leads: that is outside the data the runner may show.
func (s *FileStore) escaped(p string, viaLink bool) error {
	if viaLink {
		return silo.Errorf(silo.EFORBIDDEN, "%s escapes the runner's storage root %s through a symbolic link: the runner reads only data inside %s, so copy the data there or make the link point inside it", s.uri(p), s.root, s.root)
	}
	return silo.Errorf(silo.EFORBIDDEN, "%s escapes the runner's storage root %s: give a path inside %s", s.uri(p), s.root, s.root)
}

// fail turns a file system error from doing something to p into one a
// person can act on.
func (s *FileStore) fail(doing, p string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		return silo.Errorf(silo.ENOTFOUND, "no file or folder at %s", s.uri(p))
	case errors.Is(err, fs.ErrPermission):
		return silo.Errorf(silo.EFORBIDDEN, "permission denied %s %s: the user the runner runs as (uid %d) must be able to read it (and write, for predictions)", doing, s.uri(p), os.Getuid())
	case strings.Contains(err.Error(), "path escapes"):
		// A link changed between the check and the open: os.Root refused it
		// (its error has no exported value to test for).
		return s.escaped(p, true)
	case errors.Is(err, syscall.EISDIR), errors.Is(err, syscall.EEXIST):
		return silo.Errorf(silo.EINVALID, "cannot write %s: a folder is in the way", s.uri(p))
	case errors.Is(err, syscall.ENOSPC):
		return silo.Errorf(silo.EINVALID, "no space left %s %s: free some space in the runner's storage", doing, s.uri(p))
	}
	return fmt.Errorf("%s %s: %w", doing, s.uri(p), err)
}

// pathErr drops the path from a *fs.PathError, which the message repeats.
func pathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
