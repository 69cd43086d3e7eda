package runner

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"syscall"

	"github.com/silofl/silo"
)

// Diagnostics is what a diagnostics task reports: the runner's resources and
// whether its storage root is usable. It reads no data.
type Diagnostics struct {
	AgentVersion    string `json:"agent_version"`
	GoVersion       string `json:"go_version"`
	OS              string `json:"os"`
	VCPU            int    `json:"vcpu"`
	MemoryMB        int    `json:"memory_mb"`
	StorageRoot     string `json:"storage_root,omitempty"`
	StorageWritable bool   `json:"storage_writable"`
	StorageFreeMB   int64  `json:"storage_free_mb,omitempty"`
}

func runDiagnostics(ctx context.Context, t *Task, log *TaskLog, cfg *Config) (json.RawMessage, error) {
	d := Diagnostics{AgentVersion: silo.Version, GoVersion: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH,
		VCPU: cfg.VCPU, MemoryMB: cfg.MemoryMB, StorageRoot: cfg.StorageRoot}
	if cfg.StorageRoot != "" {
		fi, err := os.Stat(cfg.StorageRoot)
		if err != nil {
			return nil, fmt.Errorf("storage root %s: %w", cfg.StorageRoot, err)
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("storage root %s is not a directory", cfg.StorageRoot)
		}
		probe := filepath.Join(cfg.StorageRoot, ".silo-probe")
		if err := os.WriteFile(probe, []byte("ok"), 0o600); err != nil {
			log.Warn("storage root is not writable", "root", cfg.StorageRoot, "err", err)
		} else {
			_ = os.Remove(probe)
			d.StorageWritable = true
		}
		var st syscall.Statfs_t
		if err := syscall.Statfs(cfg.StorageRoot, &st); err == nil {
			// #nosec G115 -- free blocks of a file system are far below 2^63
			d.StorageFreeMB = int64(st.Bavail) * int64(st.Bsize) >> 20
		}
		log.Info("storage root checked", "root", cfg.StorageRoot, "writable", d.StorageWritable, "free_mb", d.StorageFreeMB)
	}
	return json.Marshal(d)
}
