package dataverse

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/tidwall/gjson"
)

// The methods in this file serve `screenpopd check`: each probes one thing
// and returns an error that names what is wrong (a *AuthError, *APIError or
// *ColumnError). They do not use the cache or the breaker.

// CheckTarget is one entity the lookups query and the columns they read.
type CheckTarget struct {
	Entity    string
	EntitySet string
	Columns   []string // id, name, then every configured phone and email column
}

// CheckTargets lists the entities the configured lookups query, in search
// order (phone list first, then email), each once, with the columns a lookup
// reads or compares.
func (c *Client) CheckTargets() []CheckTarget {
	var out []CheckTarget
	idx := map[string]int{}
	for _, ec := range append(append([]EntityColumns(nil), c.cfg.Phone...), c.cfg.Email...) {
		i, ok := idx[ec.Entity]
		if !ok {
			info := c.cfg.Entities[ec.Entity]
			i = len(out)
			idx[ec.Entity] = i
			out = append(out, CheckTarget{Entity: ec.Entity, EntitySet: info.EntitySet, Columns: []string{info.IDColumn, info.NameColumn}})
		}
		for _, col := range ec.Columns {
			if !contains(out[i].Columns, col) {
				out[i].Columns = append(out[i].Columns, col)
			}
		}
	}
	return out
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// CheckAuth obtains a token and calls WhoAmI. It returns the id of the
// application user the token maps to.
func (c *Client) CheckAuth(ctx context.Context) (string, error) {
	if _, err := c.tokens.get(ctx); err != nil {
		return "", err
	}
	_, body, err := c.send(ctx, "whoami", "", func(ctx context.Context) (*http.Request, error) {
		return http.NewRequestWithContext(ctx, http.MethodGet, c.api+"WhoAmI", nil)
	}, nil)
	if err != nil {
		return "", err
	}
	var who struct{ UserId string }
	if err := json.Unmarshal(body, &who); err != nil || !IsGUID(who.UserId) {
		return "", notWebAPI("WhoAmI")
	}
	return who.UserId, nil
}

// notWebAPI is a 2xx answer that is not the Web API's JSON: a proxy's
// block or sign-in page, or a URL that is not the environment's. Every
// lookup would fail on it.
func notWebAPI(what string) error {
	return &APIError{Status: http.StatusOK, Code: "not_json", Entity: what,
		Hint: "the answer is not the Dataverse Web API's (an HTML page?): check DATAVERSE_URL and any proxy between this host and it"}
}

// ColumnError says which configured columns an entity does not have.
type ColumnError struct {
	Entity  string
	Columns []string
}

func (e *ColumnError) Error() string {
	if len(e.Columns) == 1 {
		return "column " + e.Columns[0] + " does not exist on " + e.Entity
	}
	return "columns " + strings.Join(e.Columns, ", ") + " do not exist on " + e.Entity
}

// CheckEntity reads at most one row of t.Entity with its columns (and the
// statecode filter lookups use for the built-in entities). When Dataverse
// answers that a column does not exist, each column is read alone to name
// the missing ones in a *ColumnError.
func (c *Client) CheckEntity(ctx context.Context, t CheckTarget) error {
	info, ok := c.cfg.Entities[t.Entity]
	if !ok {
		return &APIError{Entity: t.Entity, Hint: "entity not known: add it to SCREENPOP_ENTITIES"}
	}
	read := func(cols []string) error {
		u := c.api + info.EntitySet + "?$select=" + strings.Join(cols, ",") + "&$top=1"
		if info.ActiveOnly {
			u += "&$filter=" + queryEscape("statecode eq 0")
		}
		_, body, err := c.send(ctx, "check", t.Entity, func(ctx context.Context) (*http.Request, error) {
			return http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		}, nil)
		if err == nil && !gjson.GetBytes(body, "value").IsArray() {
			return notWebAPI(t.Entity)
		}
		return err
	}
	err := read(t.Columns)
	if !missingColumn(err) {
		return err
	}
	ce := &ColumnError{Entity: t.Entity}
	for _, col := range t.Columns {
		if e := read([]string{col}); missingColumn(e) {
			ce.Columns = append(ce.Columns, col)
		} else if e != nil {
			return e
		}
	}
	if len(ce.Columns) == 0 {
		return err
	}
	return ce
}

func missingColumn(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Status == http.StatusBadRequest && isQueryError(ae.Code)
}
