// Package statuslabel turns an HTTP status that an upstream answered into
// a metric label value from a fixed set: a status code label whose values
// come from the answer is a series per value, and an HTTP/2 answer may
// carry any integer as its :status (Go's client takes what strconv.Atoi
// reads), an HTTP/1.1 one any three digits.
package statuslabel

import (
	"net/http"
	"strconv"
)

// Of returns code as text when it is a registered status (200, 429, 503,
// ...), its class ("4xx", "5xx", ...) for an unregistered one between 100
// and 599 (a proxy's 520 or 499), and "other" for anything else. At most
// 70 values, whatever the upstream sends.
func Of(code int) string {
	switch {
	case code < 100 || code > 599:
		return "other"
	case http.StatusText(code) != "":
		return strconv.Itoa(code)
	}
	return strconv.Itoa(code/100) + "xx"
}
