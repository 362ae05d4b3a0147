package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/aixblock/aixblock/p2p/content"
)

// stream sends a request without the client's 30 s timeout (transfers take
// as long as they take; ctx bounds them).
func (c *Client) stream(ctx context.Context, method, path string, body io.Reader, contentType string) (*http.Response, error) {
	return c.send(ctx, &http.Client{}, method, path, body, contentType)
}

// events posts req and calls fn for each progress event; it returns the
// final event, or the error the daemon reported.
func (c *Client) events(ctx context.Context, path string, req any, fn func(DataEvent)) (DataEvent, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return DataEvent{}, err
	}
	resp, err := c.stream(ctx, http.MethodPost, path, bytes.NewReader(b), "application/json")
	if err != nil {
		return DataEvent{}, err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	for {
		var ev DataEvent
		if err := dec.Decode(&ev); err != nil {
			if errors.Is(err, io.EOF) {
				return DataEvent{}, fmt.Errorf("api %s: the daemon ended the stream early", path)
			}
			return DataEvent{}, fmt.Errorf("api %s: %w", path, err)
		}
		switch {
		case ev.Error != "":
			return ev, errors.New(ev.Error)
		case ev.Done:
			return ev, nil
		case fn != nil:
			fn(ev)
		}
	}
}

// Add imports a local path; fn sees the bytes read so far.
func (c *Client) Add(ctx context.Context, req AddRequest, fn func(DataEvent)) (DataEvent, error) {
	return c.events(ctx, "/v1/data/add", req, fn)
}

// Get fetches a CID into a local path; fn sees blocks and bytes so far.
func (c *Client) Get(ctx context.Context, req GetRequest, fn func(DataEvent)) (DataEvent, error) {
	return c.events(ctx, "/v1/data/get", req, fn)
}

// Cat copies a file's bytes to w.
func (c *Client) Cat(ctx context.Context, cid string, w io.Writer) error {
	resp, err := c.stream(ctx, http.MethodGet, "/v1/data/cat?cid="+url.QueryEscape(cid), nil, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(w, resp.Body)
	return err
}

// Ls lists a directory's entries.
func (c *Client) Ls(ctx context.Context, cid string) ([]content.Entry, error) {
	var out []content.Entry
	return out, c.do(ctx, http.MethodGet, "/v1/data/ls?cid="+url.QueryEscape(cid), nil, &out)
}

// Pins lists recursive pins.
func (c *Client) Pins(ctx context.Context) ([]string, error) {
	var out []string
	return out, c.do(ctx, http.MethodGet, "/v1/data/pin/ls", nil, &out)
}

// PinAdd fetches what is missing and pins cid recursively.
func (c *Client) PinAdd(ctx context.Context, cid string) error {
	return c.postJSON(ctx, "/v1/data/pin/add", CIDRequest{cid}, &CIDRequest{})
}

// PinRm removes a pin.
func (c *Client) PinRm(ctx context.Context, cid string) error {
	return c.postJSON(ctx, "/v1/data/pin/rm", CIDRequest{cid}, &CIDRequest{})
}

// Export writes cid's DAG as a CAR to w.
func (c *Client) Export(ctx context.Context, cid string, w io.Writer) error {
	resp, err := c.stream(ctx, http.MethodGet, "/v1/data/export?cid="+url.QueryEscape(cid), nil, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(w, resp.Body)
	return err
}

// Import sends a CAR to the daemon.
func (c *Client) Import(ctx context.Context, r io.Reader) (content.ImportResult, error) {
	var out content.ImportResult
	resp, err := c.stream(ctx, http.MethodPost, "/v1/data/import", r, "application/vnd.ipld.car")
	if err != nil {
		return out, err
	}
	defer resp.Body.Close()
	return out, json.NewDecoder(resp.Body).Decode(&out)
}

// GC removes unpinned blocks.
func (c *Client) GC(ctx context.Context) (content.GCResult, error) {
	var out content.GCResult
	return out, c.postJSON(ctx, "/v1/data/gc", struct{}{}, &out)
}

// postJSON is do without the 30 s timeout, for calls that fetch or walk data.
func (c *Client) postJSON(ctx context.Context, path string, in, out any) error {
	return c.call(ctx, &http.Client{}, http.MethodPost, path, in, out)
}
