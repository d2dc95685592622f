package scrape

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/rollguard/rollguard/configs"
)

// maxTargetFileBytes bounds one target file: target lists are small, and a
// runaway file must not take the sidecar's memory.
const maxTargetFileBytes = 4 << 20

// fileSD reads target groups from the files of one file_sd_configs entry,
// every refresh_interval. A file that cannot be read or is invalid keeps the
// targets it had (a half-written file must not drop them); a file that is
// gone takes its targets with it.
type fileSD struct {
	pool *pool
	idx  int
	cfg  configs.FileSDConfig
	done chan struct{}
	// groups are the current groups by file; only refresh touches them.
	groups map[string][]configs.TargetGroup
}

func (f *fileSD) run(ctx context.Context, start <-chan struct{}) {
	defer close(f.done)
	select {
	case <-start:
	case <-ctx.Done():
		return
	}
	t := time.NewTicker(time.Duration(f.cfg.RefreshInterval))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if f.refresh() {
				f.pool.sync()
			}
		}
	}
}

// refresh reads the files and reports whether their groups changed.
func (f *fileSD) refresh() bool {
	log := f.pool.m.log
	var paths []string
	seen := map[string]bool{}
	for _, glob := range f.cfg.Files {
		matches, err := filepath.Glob(glob)
		if err != nil { // validation rejects bad patterns; be safe anyway
			log.Error("invalid target file glob", "job", f.pool.cfg.JobName, "glob", glob, "error", err)
			continue
		}
		for _, m := range matches {
			if !seen[m] {
				seen[m] = true
				paths = append(paths, m)
			}
		}
	}
	sort.Strings(paths)
	next := make(map[string][]configs.TargetGroup, len(paths))
	for _, path := range paths {
		groups, err := readTargetFile(path)
		if err != nil {
			f.pool.m.metrics.sdErrors.WithLabelValues(f.pool.cfg.JobName).Inc()
			log.Error("target file skipped, its previous targets are kept", "job", f.pool.cfg.JobName, "file", path, "error", err)
			if old, ok := f.groups[path]; ok {
				next[path] = old
			}
			continue
		}
		next[path] = groups
	}
	if reflect.DeepEqual(next, f.groups) {
		return false
	}
	f.groups = next
	f.pool.setFileGroups(f.idx, next)
	return true
}

// readTargetFile reads a Prometheus file_sd file: a JSON or YAML list of
// {targets: [host:port], labels: {name: value}}.
func readTargetFile(path string) ([]configs.TargetGroup, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	b, err := io.ReadAll(io.LimitReader(fh, maxTargetFileBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxTargetFileBytes {
		return nil, fmt.Errorf("larger than %d bytes", maxTargetFileBytes)
	}
	groups, err := decodeTargetGroups(b, filepath.Ext(path) == ".json")
	if err != nil {
		return nil, err
	}
	for i, g := range groups {
		if p, msg := configs.ValidateTargetGroup(g); msg != "" {
			if p != "" {
				p = "." + p
			}
			return nil, fmt.Errorf("[%d]%s: %s", i, p, msg)
		}
	}
	return groups, nil
}

func decodeTargetGroups(b []byte, isJSON bool) ([]configs.TargetGroup, error) {
	var groups []configs.TargetGroup
	if isJSON {
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&groups); err != nil {
			return nil, fmt.Errorf("decode JSON: %w", err)
		}
		return groups, nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&groups); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("decode YAML: %w", err)
	}
	return groups, nil
}
