package provision

import (
	"net/url"

	"github.com/silofl/silo"
)

// defaultLocalRoot is the data directory a local runner's README shows when
// its spec has no storage path.
const defaultLocalRoot = "/var/lib/silo"

// localBundle is for a runner the user runs: its configuration, the CA
// bundle as a file, and the command line.
func localBundle(spec *silo.RunnerSpec, cfg BootstrapConfig) ([]File, error) {
	rc := runnerConfig(spec, cfg, spec.StoragePath)
	conf, err := marshal(rc)
	if err != nil {
		return nil, err
	}
	info := readmeData(spec, cfg, rc)
	info.StorageRoot = localRoot(spec.StoragePath)
	readme, err := renderReadme(localReadme, info)
	if err != nil {
		return nil, err
	}
	files := []File{{Name: RunnerConfigFile, Data: conf}, {Name: ReadmeFile, Data: readme}}
	if cfg.CABundlePEM != "" {
		files = append(files, File{Name: CAFile, Data: []byte(cfg.CABundlePEM)})
	}
	return files, nil
}

// localRoot returns the directory of a file:// storage path.
func localRoot(storagePath string) string {
	u, err := url.Parse(storagePath)
	if err != nil || u.Scheme != "file" || u.Path == "" {
		return defaultLocalRoot
	}
	return u.Path
}
