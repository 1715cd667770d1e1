package dataverse

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"strings"
)

// buildBatch encodes GET requests for the absolute URLs as a Web API $batch
// body (multipart/mixed, one application/http part per request) and returns
// it with its Content-Type.
func buildBatch(urls []string) ([]byte, string, error) {
	var rnd [12]byte
	_, _ = rand.Read(rnd[:])
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	if err := w.SetBoundary("batch_" + hex.EncodeToString(rnd[:])); err != nil {
		return nil, "", err
	}
	for _, u := range urls {
		h := textproto.MIMEHeader{}
		h.Set("Content-Type", "application/http")
		h.Set("Content-Transfer-Encoding", "binary")
		p, err := w.CreatePart(h)
		if err != nil {
			return nil, "", err
		}
		fmt.Fprintf(p, "GET %s HTTP/1.1\r\nAccept: application/json\r\n\r\n", u)
	}
	if err := w.Close(); err != nil {
		return nil, "", err
	}
	return buf.Bytes(), "multipart/mixed; boundary=" + w.Boundary(), nil
}

// batchPart is one answer of a $batch response.
type batchPart struct {
	Status int
	Header http.Header
	Body   []byte
}

// parseBatch decodes a $batch response body, in request order.
func parseBatch(contentType string, body []byte) ([]batchPart, error) {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || !strings.HasPrefix(mt, "multipart/") || params["boundary"] == "" {
		return nil, fmt.Errorf("batch response: unexpected content type %q", contentType)
	}
	r := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	var parts []batchPart
	for {
		p, err := r.NextPart()
		if err == io.EOF {
			return parts, nil
		}
		if err != nil {
			return nil, fmt.Errorf("batch response: %w", err)
		}
		if ct := p.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/http") {
			return nil, fmt.Errorf("batch response: part of type %q (a changeset?) not expected for queries", ct)
		}
		resp, err := http.ReadResponse(bufio.NewReader(p), nil)
		if err != nil {
			return nil, fmt.Errorf("batch response part: %w", err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("batch response part: %w", err)
		}
		parts = append(parts, batchPart{Status: resp.StatusCode, Header: resp.Header, Body: b})
	}
}
