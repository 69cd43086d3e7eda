package silo

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"
)

// Private record linkage (type "prl") finds the records that two or more
// datasets on different runners share, keyed by identifier columns, without
// any party learning an identifier it did not hold. Its config names the key
// columns of each dataset (id_columns, or several alternative keys tried in
// order), and how values are normalised before they are compared.

// Normalisations a prl session may apply to key values, in this order.
const (
	NormalizeTrim           = "trim"            // leading and trailing white space
	NormalizeLowercase      = "lowercase"       // Unicode lower case
	NormalizeCollapseSpaces = "collapse_spaces" // runs of white space become one space
	NormalizeDigitsOnly     = "digits_only"     // keep 0-9 only (phone numbers)
)

// Normalizations lists them in the order they are applied.
var Normalizations = []string{NormalizeTrim, NormalizeLowercase, NormalizeCollapseSpaces, NormalizeDigitsOnly}

// MaxLinkageKeys bounds the alternative keys of one session, and
// MaxKeyColumns the columns of one composite key.
const (
	MaxLinkageKeys = 8
	MaxKeyColumns  = 8
)

// DefaultPRLRoundTimeout is a prl session's round_timeout unless it sets
// one: a step blinds or compares every record of a dataset, which takes
// minutes for tens of millions.
const DefaultPRLRoundTimeout = "2h"

// LinkageKeys returns the session's keys in the order they are tried: the
// one key of id_columns, or the alternatives of keys.
func (c *SessionConfig) LinkageKeys() []map[string][]string {
	if len(c.Keys) > 0 {
		return c.Keys
	}
	if c.IDColumns != nil {
		return []map[string][]string{c.IDColumns}
	}
	return nil
}

// prlField names a prl field set in the config, or "".
func (c *SessionConfig) prlField() string {
	switch {
	case c.IDColumns != nil:
		return "id_columns"
	case c.Normalize != nil:
		return "normalize"
	case c.Keys != nil:
		return "keys"
	}
	return ""
}

// hflField names a training field set in the config, or "".
func (c *SessionConfig) hflField() string {
	for _, f := range []struct {
		name string
		v    any
	}{{"rounds", c.Rounds}, {"task", c.Task}, {"model", c.Model}, {"optimizer", c.Optimizer}, {"strategy", c.Strategy},
		{"differential_privacy", c.DifferentialPrivacy}, {"validation", c.Validation}, {"save_best_model", c.SaveBestModel}, {"seed", c.Seed}} {
		if !reflect.ValueOf(f.v).IsZero() {
			return f.name
		}
	}
	return ""
}

// validatePRL checks and completes a prl session's config: every dataset
// takes part (min_clients is their number), every key names one or more
// columns of every dataset, and normalize lists known options.
func (c *SessionConfig) validatePRL() error {
	if f := c.hflField(); f != "" {
		return FieldErrorf(f, "%s belongs to hfl (training) sessions, not prl: a record linkage takes datasets, id_columns (or keys) and normalize", f)
	}
	if len(c.Datasets) < 2 {
		return FieldErrorf("datasets", "record linkage needs two or more datasets, on different runners")
	}
	if c.MinClients == 0 {
		c.MinClients = len(c.Datasets)
	}
	if c.MinClients != len(c.Datasets) {
		return FieldErrorf("min_clients", "every dataset of a record linkage takes part: leave min_clients out or set it to %d", len(c.Datasets))
	}
	if c.RoundTimeout == "" {
		c.RoundTimeout = DefaultPRLRoundTimeout
	}
	if d, err := time.ParseDuration(c.RoundTimeout); err != nil || d < time.Second || d > 48*time.Hour {
		return FieldErrorf("round_timeout", "round_timeout %q must be a duration between 1s and 48h, such as 30m (each step of the linkage gets that long)", c.RoundTimeout)
	}
	switch {
	case c.IDColumns != nil && c.Keys != nil:
		return FieldErrorf("keys", "give id_columns (one key) or keys (alternative keys, tried in order), not both")
	case c.IDColumns == nil && len(c.Keys) == 0:
		return FieldErrorf("id_columns", `name the key columns of each dataset, e.g. "id_columns": {%q: ["email"], …}`, c.Datasets[0])
	case len(c.Keys) > MaxLinkageKeys:
		return FieldErrorf("keys", "at most %d alternative keys", MaxLinkageKeys)
	}
	field := "id_columns"
	for i, key := range c.LinkageKeys() {
		if c.Keys != nil {
			field = fmt.Sprintf("keys[%d]", i)
		}
		if err := c.validateKey(field, key); err != nil {
			return err
		}
	}
	seen := map[string]bool{}
	for _, n := range c.Normalize {
		if !slices.Contains(Normalizations, n) {
			return FieldErrorf("normalize", "unknown normalization %q: use %s", n, strings.Join(Normalizations, ", "))
		}
		if seen[n] {
			return FieldErrorf("normalize", "normalization %q is listed twice", n)
		}
		seen[n] = true
	}
	// One canonical order, the order they are applied in.
	slices.SortFunc(c.Normalize, func(a, b string) int {
		return slices.Index(Normalizations, a) - slices.Index(Normalizations, b)
	})
	return nil
}

// validateKey checks one key: a list of columns for each dataset, the same
// number in each (they are compared in order), and no dataset the session
// does not use.
func (c *SessionConfig) validateKey(field string, key map[string][]string) error {
	width := -1
	for ds := range key {
		if !slices.Contains(c.Datasets, ds) {
			return FieldErrorf(field, "%s names dataset %q, which the session does not use (its datasets: %s)", field, ds, strings.Join(c.Datasets, ", "))
		}
	}
	for _, ds := range c.Datasets {
		cols, ok := key[ds]
		if !ok || len(cols) == 0 {
			return FieldErrorf(field, "%s has no columns for dataset %s: list its key column(s), e.g. %q: [\"email\"]", field, ds, ds)
		}
		if len(cols) > MaxKeyColumns {
			return FieldErrorf(field, "%s: a key has at most %d columns", field, MaxKeyColumns)
		}
		for i, col := range cols {
			if strings.TrimSpace(col) == "" {
				return FieldErrorf(field, "%s: dataset %s has an empty column name", field, ds)
			}
			if slices.Contains(cols[:i], col) {
				return FieldErrorf(field, "%s: dataset %s lists column %s twice", field, ds, col)
			}
		}
		if width >= 0 && len(cols) != width {
			return FieldErrorf(field, "%s: every dataset needs the same number of key columns, compared in order (%s has %d, %s has %d)", field, c.Datasets[0], width, ds, len(cols))
		}
		width = len(cols)
	}
	return nil
}
