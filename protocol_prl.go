package silo

import "fmt"

// Private record linkage tasks. A linkage of n datasets is a ring: every
// runner blinds its own keys (prl_blind), then n-1 times re-blinds the set
// the runner before it in the ring sent (prl_reblind), so that every set is
// blinded by every runner; the last of those steps sorts its output. The
// server compares the fully blinded sets and sends each runner the linked
// records of its own set (prl_link), which the runner writes to its own
// storage. Blinded sets travel as binary parts of 32-byte group elements.
const (
	TaskPRLBlind   = "prl_blind"
	TaskPRLReblind = "prl_reblind"
	TaskPRLLink    = "prl_link"
)

// PRLPayload is the JSON of every prl task.
type PRLPayload struct {
	Session string          `json:"session"`
	Dataset string          `json:"dataset"`
	URI     string          `json:"uri"`
	Schema  []ColumnType    `json:"schema"`
	Privacy PrivacyControls `json:"privacy"`
	// Keys are this dataset's columns of each alternative key, in order;
	// Normalize the normalisations applied to every value.
	Keys      [][]string `json:"keys"`
	Normalize []string   `json:"normalize,omitempty"`
	// Parties is the number of datasets; Stage the re-blinding step (1 to
	// Parties-1); the last one sorts its output.
	Parties int `json:"parties"`
	Stage   int `json:"stage,omitempty"`
	// Records are the sizes of the sets a prl_reblind task's parts hold,
	// one per key, and of the linkage a prl_link task's part holds
	// (Records[0]): the runner checks the parts against them.
	Records []int64 `json:"records,omitempty"`
	// Rows is the dataset's row count when it was connected (for progress).
	Rows int64 `json:"rows,omitempty"`
}

// Part names of prl tasks and results.
func PRLSetPart(key int) string   { return fmt.Sprintf("set/%d", key) }   // a blinded set
func PRLTagsPart(key int) string  { return fmt.Sprintf("tags/%d", key) }  // its records' tags, for the server
func PRLInPart(key int) string    { return fmt.Sprintf("in/%d", key) }    // a set to re-blind
func PRLFinalPart(key int) string { return fmt.Sprintf("final/%d", key) } // a fully blinded set, sorted

// PRLLinksPart is a prl_link task's part: the tags of the runner's linked
// records, in the common order.
const PRLLinksPart = "links"

// PRLKeyCounts are the counts of one key in one dataset.
type PRLKeyCounts struct {
	// Records is the set's size: rows with a usable key, each key once.
	Records int64 `json:"records"`
	// Nulls counts rows skipped for a null or empty key column;
	// Duplicates, rows whose key an earlier row already had (the first is
	// kept).
	Nulls      int64 `json:"nulls"`
	Duplicates int64 `json:"duplicates"`
}

// PRLBlindOutput is what a prl_blind task reports besides its sets: counts.
type PRLBlindOutput struct {
	Rows int64          `json:"rows"`
	Keys []PRLKeyCounts `json:"keys"`
	// NullRows counts rows with no usable key at all.
	NullRows int64 `json:"null_rows"`
}

// PRLLinkOutput is what a prl_link task reports: how many records it
// linked and where the linkage is, in the runner's own storage.
type PRLLinkOutput struct {
	Linked int64  `json:"linked"`
	Path   string `json:"path"`
}

// LinkageMetrics are a prl session's metrics: each dataset's overlap.
type LinkageMetrics struct {
	Clients []LinkageClient `json:"clients"`
}

// LinkageClient is one dataset's overlap with the others.
type LinkageClient struct {
	Dataset            string  `json:"dataset"`
	NRecords           int64   `json:"n_records"`
	NOverlappedRecords int64   `json:"n_overlapped_records"`
	FracOverlapped     float64 `json:"frac_overlapped"`
	// NNullKeys counts rows no key could match (a null key column in
	// every key); NDuplicateKeys, rows left out because an earlier row had
	// the same key.
	NNullKeys      int64 `json:"n_null_keys"`
	NDuplicateKeys int64 `json:"n_duplicate_keys"`
}
