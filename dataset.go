package silo

import (
	"regexp"
	"strings"
	"time"
)

// DatasetStatus is where a dataset's connection stands: the runner opens the
// data and reports its schema, or says why it cannot.
type DatasetStatus string

const (
	DatasetConnecting DatasetStatus = "connecting"
	DatasetConnected  DatasetStatus = "connected"
	DatasetError      DatasetStatus = "error"
)

// Column is one column of a dataset as its runner reported it. Summaries are
// present only where the privacy controls allow them (enough records, not an
// identifier, not excluded).
type Column struct {
	Name       string   `json:"name"`
	Type       string   `json:"type"` // int, float, bool, string, timestamp; "excluded" for columns never read
	Nulls      int64    `json:"nulls"`
	Count      int64    `json:"count"`
	Identifier bool     `json:"identifier,omitempty"`
	Excluded   bool     `json:"excluded,omitempty"`
	Mean       *float64 `json:"mean,omitempty"`
	Std        *float64 `json:"std,omitempty"`
	Distinct   *int64   `json:"distinct,omitempty"`
	// MostlyUnique marks a column whose values mostly occur once: it tells
	// people apart, so it is never a categorical feature.
	MostlyUnique bool `json:"mostly_unique,omitempty"`
	// Categories of a low-cardinality string column, each seen at least
	// min_records_per_aggregate times; used to one-hot encode it.
	Categories []string `json:"categories,omitempty"`
}

// DatasetSpec is what a custodian gives when registering a dataset.
type DatasetSpec struct {
	Name        string           `json:"name"`
	Runner      string           `json:"runner"`
	URI         string           `json:"uri"`
	Description string           `json:"description,omitempty"`
	Privacy     *PrivacyControls `json:"privacy,omitempty"`
}

// Dataset is a registered dataset: metadata only; its rows stay on its runner.
type Dataset struct {
	ID          int64           `json:"id"`
	Name        string          `json:"name"`
	Runner      string          `json:"runner"`
	URI         string          `json:"uri"`
	Description string          `json:"description"`
	Owner       string          `json:"owner"`
	Privacy     PrivacyControls `json:"privacy"`
	Status      DatasetStatus   `json:"status"`
	Error       string          `json:"error"`
	Format      string          `json:"format,omitempty"`
	Files       int             `json:"files,omitempty"`
	RowCount    int64           `json:"row_count"`
	Columns     []Column        `json:"columns"`
	// EpsilonSpent is the sum of the privacy ledger's entries: of every
	// dataset, live or deregistered, on the same data, which share one budget.
	EpsilonSpent float64 `json:"epsilon_spent"`
	// EpsilonReserved is what running sessions reserved on the same data
	// and have not spent yet: it is not available to new sessions until
	// they end.
	EpsilonReserved float64 `json:"epsilon_reserved"`
	// Effective is what binds the data: the strictest of Privacy, the
	// controls of every other live dataset on the same data, and the
	// runner's policy, with who set each field.
	Effective   *EffectivePrivacy `json:"effective_privacy,omitempty"`
	Attachments []Attachment      `json:"attachments"`
	CreatedAt   time.Time         `json:"created_at"`
	UpdatedAt   time.Time         `json:"updated_at"`
	ConnectedAt *time.Time        `json:"connected_at,omitempty"`
}

// Attachment is a metadata file of a dataset (data dictionary, licence…),
// stored by the server.
type Attachment struct {
	ID          int64     `json:"id"`
	Name        string    `json:"name"`
	ContentType string    `json:"content_type"`
	Size        int64     `json:"size"`
	UploadedBy  string    `json:"uploaded_by"`
	UploadedAt  time.Time `json:"uploaded_at"`
}

// MaxAttachmentBytes bounds one attachment.
const MaxAttachmentBytes = 10 << 20

var datasetName = regexp.MustCompile(`^[a-z][a-z0-9_]{1,62}[a-z0-9]$`)

// ValidateDatasetName checks a dataset name: sessions refer to datasets by
// name, so it is short and plain.
func ValidateDatasetName(name string) error {
	if !datasetName.MatchString(name) {
		return FieldErrorf("name", "dataset name %q must be 3–64 lowercase letters, digits or underscores, starting with a letter (e.g. hospital_a)", name)
	}
	return nil
}

// ValidateDatasetDescription checks a dataset's description.
func ValidateDatasetDescription(d string) error {
	if len(d) > 4000 {
		return FieldErrorf("description", "description must be at most 4000 characters")
	}
	return CheckText("description", d, true)
}

// Validate checks the spec's own fields (the URI's scheme against the runner
// and the privacy controls), reporting every problem at once (see
// FieldErrors); the runner checks the data itself.
func (s *DatasetSpec) Validate() error {
	var v fieldErrors
	s.Name, s.Runner, s.URI = strings.TrimSpace(s.Name), strings.TrimSpace(s.Runner), strings.TrimSpace(s.URI)
	s.Description = strings.TrimSpace(s.Description)
	v.addErr(ValidateDatasetName(s.Name))
	if s.Runner == "" {
		v.add("runner", "choose the task runner next to the data; if there is none, ask a Workspace Administrator or a Model Builder to register one")
	}
	if s.URI == "" {
		v.add("uri", "uri is required: s3://bucket.silo/path (AWS runners), azure://container/path (Azure runners) or file:///path (local runners)")
	}
	v.addErr(ValidateDatasetDescription(s.Description))
	for field, val := range map[string]string{"runner": s.Runner, "uri": s.URI} {
		if !v.has(field) {
			v.addErr(CheckText(field, val, false))
		}
	}
	if s.Privacy == nil {
		p := DefaultPrivacyControls()
		s.Privacy = &p
	}
	v.addErr(s.Privacy.Validate())
	return v.err()
}

// URISchemeFor is the URI scheme a runner of provider p reads.
func URISchemeFor(p Provider) string {
	switch p {
	case ProviderAWS:
		return "s3"
	case ProviderAzure:
		return "azure"
	}
	return "file"
}
