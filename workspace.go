package silo

import (
	"regexp"
	"slices"
	"strings"
	"time"
)

// Plans a workspace may be on.
var Plans = []string{"community", "team", "enterprise"}

// Workspace is the one workspace a server hosts, with its billing information.
type Workspace struct {
	Name           string    `json:"name"`
	BillingContact string    `json:"billing_contact"`
	BillingEmail   string    `json:"billing_email"`
	BillingAddress string    `json:"billing_address"`
	Plan           string    `json:"plan"`
	UpdatedAt      time.Time `json:"updated_at,omitzero"`
}

// workspaceName is also used in default storage names, so it follows the
// same rule as runner names.
var workspaceName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{1,30}[a-z0-9]$`)

// Validate checks w and normalises its fields.
func (w *Workspace) Validate() error {
	w.Name = strings.TrimSpace(w.Name)
	if !workspaceName.MatchString(w.Name) || strings.Contains(w.Name, "--") {
		return FieldErrorf("name", "workspace name %q must be 3–32 lowercase letters, digits or single dashes, starting and ending with a letter or digit (it is used in storage names)", w.Name)
	}
	w.BillingContact = strings.TrimSpace(w.BillingContact)
	if len(w.BillingContact) > 200 {
		return FieldErrorf("billing_contact", "billing contact must be at most 200 characters")
	}
	if err := CheckText("billing_contact", w.BillingContact, false); err != nil {
		return err
	}
	if w.BillingEmail = strings.TrimSpace(w.BillingEmail); w.BillingEmail != "" {
		e, err := NormalizeEmail(w.BillingEmail)
		if err != nil {
			return FieldErrorf("billing_email", "billing email: %s", ErrorMessage(err))
		}
		w.BillingEmail = e
	}
	w.BillingAddress = strings.TrimSpace(w.BillingAddress)
	if len(w.BillingAddress) > 1000 {
		return FieldErrorf("billing_address", "billing address must be at most 1000 characters")
	}
	if err := CheckText("billing_address", w.BillingAddress, true); err != nil {
		return err
	}
	if w.Plan == "" {
		w.Plan = Plans[0]
	}
	if !slices.Contains(Plans, w.Plan) {
		return FieldErrorf("plan", "unknown plan %q: use one of %s", w.Plan, strings.Join(Plans, ", "))
	}
	return nil
}
