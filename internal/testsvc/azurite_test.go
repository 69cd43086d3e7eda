package testsvc

import (
	"net/http"
	"strings"
	"testing"
)

func TestAzuriteServesBlobAPI(t *testing.T) {
	cs := Azurite(t)
	var endpoint string
	for _, kv := range strings.Split(cs, ";") {
		if v, ok := strings.CutPrefix(kv, "BlobEndpoint="); ok {
			endpoint = v
		}
	}
	if !strings.HasPrefix(endpoint, "http://127.0.0.1:") || !strings.HasSuffix(endpoint, "/"+AzuriteAccount) {
		t.Fatalf("BlobEndpoint = %q in %q, want http://127.0.0.1:PORT/%s", endpoint, cs, AzuriteAccount)
	}
	// An unsigned request is refused, but by Azurite's blob service.
	resp, err := http.Get(endpoint + "?comp=list")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if s := resp.Header.Get("Server"); !strings.Contains(s, "Azurite-Blob") {
		t.Fatalf("Server header %q (status %s), want Azurite-Blob", s, resp.Status)
	}
}
