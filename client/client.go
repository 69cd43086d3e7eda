// Package client is the Go SDK for a Silo server's HTTP API (/api/v1). The
// silo command line, the task runner and the integration tests all use it, so
// whatever they can do, a script can do too.
//
// Errors the server reports come back as *silo.Error with the server's code
// and message, so callers can branch on silo.ErrorCode(err) the same way the
// server does:
//
//	c := client.New("https://silo.example.org", os.Getenv("SILO_TOKEN"))
//	users, err := c.ListUsers(ctx)
//	if silo.ErrorCode(err) == silo.EFORBIDDEN {
//		log.Fatal("this token may not list users")
//	} else if err != nil {
//		log.Fatal(err)
//	}
//	for _, u := range users {
//		fmt.Println(u.Email, u.Roles)
//	}
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"

	"github.com/silofl/silo"
)

// Client talks to one Silo server as one identity. It is safe for concurrent
// use once configured.
type Client struct {
	// HTTPClient sends the requests; nil means http.DefaultClient. Set one
	// with a custom Transport for a private CA bundle or a proxy. Calls are
	// bounded by their ctx, not by a client-wide timeout, so that long
	// requests are possible.
	HTTPClient *http.Client
	// UserAgent is sent with every request, so server logs show which tool
	// made it.
	UserAgent string
	// SpillDir, when set, is where task parts larger than SpillAbove bytes
	// are written as they arrive, instead of being held in memory (a
	// blinded set of millions of records): such a part comes back as a
	// file (silo.Part.Path) and is the caller's to remove.
	SpillDir   string
	SpillAbove int64

	baseURL string
	token   string
}

// New returns a Client for the server at baseURL (such as
// "https://silo.example.org") that authenticates with the access token
// token, or anonymously when token is "".
func New(baseURL, token string) *Client {
	return &Client{
		HTTPClient: http.DefaultClient,
		UserAgent:  "silo-go-client/" + silo.Version,
		baseURL:    strings.TrimRight(baseURL, "/"),
		token:      token,
	}
}

// BaseURL returns the server URL the client talks to, without a trailing
// slash.
func (c *Client) BaseURL() string { return c.baseURL }

// unwrapURLError drops *url.Error's repetition of the method and full URL:
// errors say instead which server could not be reached, and keep the cause
// for errors.Is.
func unwrapURLError(err error) error {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		return uerr.Err
	}
	return err
}

// maxErrorBody bounds how much of an error response is read: error bodies are
// small, and a misbehaving proxy should not make us buffer a web page.
const maxErrorBody = 64 << 10

// do sends a request with in (if not nil) as its JSON body and decodes a
// successful JSON response into out (if not nil).
func (c *Client) do(ctx context.Context, method, path string, query url.Values, in, out any) error {
	u := c.baseURL + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode %s %s request: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return fmt.Errorf("silo server URL %q: %w", c.baseURL, err)
	}
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.UserAgent != "" {
		req.Header.Set("User-Agent", c.UserAgent)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}

	hc := c.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("could not reach the Silo server at %s: %w", c.baseURL, unwrapURLError(err))
	}
	defer resp.Body.Close()

	if resp.StatusCode >= 400 {
		return responseError(resp)
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		_, _ = io.Copy(io.Discard, resp.Body) // let the connection be reused
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("unexpected response from %s to %s %s (is this a Silo server?): %w", c.baseURL, method, path, err)
	}
	return nil
}

// responseError turns an error response into a *silo.Error: the server's own
// error when the body has the API's {"error": {...}} shape, otherwise one
// built from the status, so that a proxy's 502 page still gives a code and a
// readable message.
func responseError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	var env struct {
		Error *silo.Error `json:"error"`
	}
	if json.Unmarshal(b, &env) == nil && env.Error != nil && env.Error.Code != "" {
		return env.Error
	}
	msg := "server returned " + resp.Status
	var plain struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(b, &plain) == nil && plain.Error != "" {
		// e.g. /healthz's {"status": "unavailable", "error": "..."}
		return &silo.Error{Code: codeForStatus(resp.StatusCode), Message: msg + ": " + plain.Error}
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt == "text/plain" {
		// Plain-text bodies (http.Error, most proxies) are usually one line
		// worth showing; HTML pages are not.
		if line, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n"); line != "" && len(line) <= 200 {
			msg += ": " + line
		}
	}
	return &silo.Error{Code: codeForStatus(resp.StatusCode), Message: msg}
}

// codeForStatus is the inverse of the server's code → status mapping.
func codeForStatus(status int) string {
	switch status {
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnprocessableEntity:
		return silo.EINVALID
	case http.StatusUnauthorized:
		return silo.EUNAUTHORIZED
	case http.StatusForbidden:
		return silo.EFORBIDDEN
	case http.StatusNotFound:
		return silo.ENOTFOUND
	case http.StatusConflict:
		return silo.ECONFLICT
	case http.StatusTooManyRequests:
		return silo.ETOOMANY
	}
	if status < 500 {
		return silo.EINVALID
	}
	return silo.EINTERNAL
}

// list GETs a JSON array. It returns an empty, non-nil slice for an empty
// listing so callers can encode it as [] rather than null.
func list[T any](ctx context.Context, c *Client, path string, query url.Values) ([]*T, error) {
	var out []*T
	if err := c.do(ctx, http.MethodGet, path, query, nil, &out); err != nil {
		return nil, err
	}
	if out == nil {
		out = []*T{}
	}
	return out, nil
}

// get GETs one JSON object.
func get[T any](ctx context.Context, c *Client, path string) (*T, error) {
	out := new(T)
	if err := c.do(ctx, http.MethodGet, path, nil, nil, out); err != nil {
		return nil, err
	}
	return out, nil
}

// send sends in with method and decodes the JSON object in the response.
func send[T any](ctx context.Context, c *Client, method, path string, in any) (*T, error) {
	out := new(T)
	if err := c.do(ctx, method, path, nil, in, out); err != nil {
		return nil, err
	}
	return out, nil
}

// Health is the server's /healthz report.
type Health struct {
	Status   string `json:"status"`
	Version  string `json:"version"`
	Database string `json:"database"`
}

// Health reports whether the server is up, its version and which database it
// runs on. It needs no authentication.
func (c *Client) Health(ctx context.Context) (*Health, error) {
	return get[Health](ctx, c, "/healthz")
}
