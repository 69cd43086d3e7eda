package blob

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// TestAzureDefaultCredential: a runner given only its storage account
// authenticates with the standard Azure chain. Here the managed identity of
// an App Service-style host (IDENTITY_ENDPOINT) answers, as Azure's would; a
// hand-written key-or-nothing rule refused this configuration.
func TestAzureDefaultCredential(t *testing.T) {
	for _, k := range []string{"AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_FEDERATED_TOKEN_FILE", "MSI_ENDPOINT", "MSI_SECRET", "IMDS_ENDPOINT"} {
		t.Setenv(k, "") // restored after the test
		os.Unsetenv(k)
	}
	var asked string
	msi := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-IDENTITY-HEADER") != "secret-header" {
			http.Error(w, "no identity header", http.StatusUnauthorized)
			return
		}
		asked = r.URL.Query().Get("resource")
		json.NewEncoder(w).Encode(map[string]any{"access_token": "token-from-managed-identity", "token_type": "Bearer",
			"expires_on": strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10), "resource": asked})
	}))
	defer msi.Close()
	t.Setenv("IDENTITY_ENDPOINT", msi.URL)
	t.Setenv("IDENTITY_HEADER", "secret-header")

	if _, err := NewAzureClient(AzureConfig{AccountName: "hospitalastorage"}); err != nil {
		t.Fatalf("an account name alone: %v", err)
	}
	cred, err := defaultAzureCredential()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tok, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{"https://storage.azure.com/.default"}})
	if err != nil {
		t.Fatalf("token from the managed identity: %v", err)
	}
	if tok.Token != "token-from-managed-identity" || asked != "https://storage.azure.com" {
		t.Errorf("token %q for resource %q", tok.Token, asked)
	}
}
