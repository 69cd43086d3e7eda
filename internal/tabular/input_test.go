package tabular

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// memInput is an Input over bytes in memory.
type memInput struct {
	name string
	data []byte
}

func (m *memInput) Name() string { return m.name }
func (m *memInput) Size() int64  { return int64(len(m.data)) }
func (m *memInput) Open(context.Context) (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(m.data)), nil
}
func (m *memInput) ReadAt(p []byte, off int64) (int, error) {
	return bytes.NewReader(m.data).ReadAt(p, off)
}

// fileInput is an Input over a local file, as the file:// blob backend
// will provide.
type fileInput struct {
	path string
	f    *os.File
	size int64
}

func openFileInput(t testing.TB, path string) *fileInput {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	return &fileInput{path: path, f: f, size: st.Size()}
}

func (f *fileInput) Name() string { return filepath.Base(f.path) }
func (f *fileInput) Size() int64  { return f.size }
func (f *fileInput) Open(context.Context) (io.ReadCloser, error) {
	return os.Open(f.path)
}
func (f *fileInput) ReadAt(p []byte, off int64) (int, error) { return f.f.ReadAt(p, off) }

func testdata(t testing.TB, names ...string) []Input {
	t.Helper()
	in := make([]Input, len(names))
	for i, n := range names {
		in[i] = openFileInput(t, filepath.Join("testdata", n))
	}
	return in
}

func ptr[T any](v T) *T { return &v }
