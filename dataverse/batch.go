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
	"strings"
)

// buildBatch encodes GET requests for the absolute URLs as a Web API $batch
// body (multipart/mixed, one application/http part per request) and returns
// it with its Content-Type. The body is written into one buffer of its
// exact size: the URLs are long (tens of comparisons each) and a miss
// builds one batch.
func buildBatch(urls []string) ([]byte, string, error) {
	var rnd [12]byte
	_, _ = rand.Read(rnd[:])
	boundary := "batch_" + hex.EncodeToString(rnd[:])
	const (
		head = "\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\nGET "
		tail = " HTTP/1.1\r\nAccept: application/json\r\n\r\n\r\n"
	)
	n := len(boundary) + 6
	for _, u := range urls {
		if strings.ContainsAny(u, " \r\n") {
			return nil, "", fmt.Errorf("batch: request URL with a space or line break")
		}
		n += 2 + len(boundary) + len(head) + len(u) + len(tail)
	}
	b := make([]byte, 0, n)
	for _, u := range urls {
		b = append(b, "--"...)
		b = append(b, boundary...)
		b = append(b, head...)
		b = append(b, u...)
		b = append(b, tail...)
	}
	b = append(b, "--"...)
	b = append(b, boundary...)
	b = append(b, "--\r\n"...)
	return b, "multipart/mixed; boundary=" + boundary, nil
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
		// A part is a short status line, a few headers and a small JSON
		// body: a small reader, not bufio's 4 KB default per part.
		resp, err := http.ReadResponse(bufio.NewReaderSize(p, 512), nil)
		if err != nil {
			return nil, fmt.Errorf("batch response part: %w", err)
		}
		b, err := readBody(resp)
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("batch response part: %w", err)
		}
		parts = append(parts, batchPart{Status: resp.StatusCode, Header: resp.Header, Body: b})
	}
}

// readBody reads a part's body, into a buffer of its announced length when
// there is one.
func readBody(resp *http.Response) ([]byte, error) {
	if n := resp.ContentLength; n > 0 && n <= 16<<20 {
		b := make([]byte, n)
		if _, err := io.ReadFull(resp.Body, b); err != nil {
			return nil, err
		}
		return b, nil
	}
	return io.ReadAll(resp.Body)
}
