package jobs

import (
	"encoding/base64"
	"strconv"
	"strings"
)

const (
	defaultPageSize = 50
	maxPageSize     = 500
)

// pageSize applies the default and the cap to a requested page size.
func pageSize(n int) (int, error) {
	switch {
	case n < 0:
		return 0, invalid("page_size", "must not be negative")
	case n == 0:
		return defaultPageSize, nil
	case n > maxPageSize:
		return maxPageSize, nil
	}
	return n, nil
}

// Page tokens are opaque to clients: base64 of the position after which the next page
// starts, so a page is stable however many jobs arrive meanwhile.

func encodeJobCursor(decidedAt int64, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(decidedAt, 10) + ":" + id))
}

func decodeJobCursor(tok string) (int64, string, error) {
	if tok == "" {
		return 0, "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return 0, "", invalid("page_token", "not a token this service issued")
	}
	at, id, ok := strings.Cut(string(b), ":")
	n, err := strconv.ParseInt(at, 10, 64)
	if !ok || err != nil || id == "" {
		return 0, "", invalid("page_token", "not a token this service issued")
	}
	return n, id, nil
}

func encodeIDCursor(id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(id))
}

func decodeIDCursor(tok string) (string, error) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return "", invalid("page_token", "not a token this service issued")
	}
	return string(b), nil
}
