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

// ColumnError says which configured columns an entity does not have or,
// with NotText, which lookup columns are not text: a lookup compares them
// with the caller's number or address, and Dataverse refuses every such
// query.
type ColumnError struct {
	Entity  string
	Columns []string
	NotText bool
}

func (e *ColumnError) Error() string {
	switch {
	case e.NotText && len(e.Columns) == 1:
		return "column " + e.Columns[0] + " of " + e.Entity + " is not a text column: Dataverse refuses to compare it with a phone number or email address"
	case e.NotText:
		return "columns " + strings.Join(e.Columns, ", ") + " of " + e.Entity + " are not text columns: Dataverse refuses to compare them with a phone number or email address"
	case len(e.Columns) == 1:
		return "column " + e.Columns[0] + " does not exist on " + e.Entity
	}
	return "columns " + strings.Join(e.Columns, ", ") + " do not exist on " + e.Entity
}

// CheckEntity reads at most one row of t.Entity with its columns (and the
// statecode filter lookups use for the built-in entities), then runs each
// configured lookup of the entity once, as a lookup builds it, with a
// number or address no record has. When Dataverse answers that a column
// does not exist, or refuses to compare one with text, each column is
// tried alone to name the ones at fault in a *ColumnError.
func (c *Client) CheckEntity(ctx context.Context, t CheckTarget) error {
	info, ok := c.cfg.Entities[t.Entity]
	if !ok {
		return &APIError{Entity: t.Entity, Hint: "entity not known: add it to SCREENPOP_ENTITIES"}
	}
	get := func(u string) error {
		_, body, err := c.send(ctx, "check", t.Entity, func(ctx context.Context) (*http.Request, error) {
			return http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		}, nil)
		if err == nil && !gjson.GetBytes(body, "value").IsArray() {
			return notWebAPI(t.Entity)
		}
		return err
	}
	read := func(cols []string) error {
		u := c.api + info.EntitySet + "?$select=" + strings.Join(cols, ",") + "&$top=1"
		if info.ActiveOnly {
			u += "&$filter=" + queryEscape("statecode eq 0")
		}
		return get(u)
	}
	if err := blame(t.Entity, t.Columns, false, read); err != nil {
		return err
	}
	for _, l := range []struct {
		lists []EntityColumns
		probe string
	}{{c.cfg.Phone, "+10000000000"}, {c.cfg.Email, "check@example.invalid"}} {
		for _, ec := range l.lists {
			if ec.Entity != t.Entity {
				continue
			}
			compare := func(cols []string) error { return get(entityQuery(c.api, info, cols, []string{l.probe}, false)) }
			if err := blame(t.Entity, ec.Columns, true, compare); err != nil {
				return err
			}
		}
	}
	return nil
}

// blame runs try with all cols and, when Dataverse refuses the query
// (400 with a query error), with each column alone, to name the columns
// it refuses in a *ColumnError (notText: refused in a comparison).
func blame(entity string, cols []string, notText bool, try func([]string) error) error {
	err := try(cols)
	if !missingColumn(err) {
		return err
	}
	ce := &ColumnError{Entity: entity, NotText: notText}
	for _, col := range cols {
		if e := try([]string{col}); missingColumn(e) {
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
