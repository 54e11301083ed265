// Package identity owns the one canonical form in which Agate compares principal ids and
// job actors, so that "Alice@Example.com", "ALICE@EXAMPLE.COM" and "alice@example.com"
// are one person to separation of duties, quorum and the tokens file alike.
//
// The form is the PRECIS Nickname profile's comparison key (RFC 8266): Unicode width
// mapping, NFKC normalization, case folding to lower case and runs of spaces collapsed.
// Nickname, not a username profile, because ordinary ids such as "Finance Bot" carry
// spaces. Ids are stored and shown as sent; only comparisons use the key.
package identity

import (
	"errors"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/mtibben/confusables"
	"golang.org/x/text/secure/precis"
)

// MaxLen bounds an id in bytes, as sent.
const MaxLen = 256

// Errors say what is wrong with an id without echoing it.
var (
	ErrEmpty      = errors.New("is empty")
	ErrTooLong    = errors.New("is longer than 256 bytes")
	ErrUTF8       = errors.New("is not valid UTF-8")
	ErrSpace      = errors.New("has leading or trailing white space")
	ErrControl    = errors.New("holds a control, format or invisible character")
	ErrDisallowed = errors.New("holds a character that identifiers may not hold")
)

// Check refuses ids that two readers could see differently: empty, overlong, invalid
// UTF-8, white space at either end, or control and format characters anywhere.
func Check(id string) error {
	switch {
	case id == "":
		return ErrEmpty
	case len(id) > MaxLen:
		return ErrTooLong
	case !utf8.ValidString(id):
		return ErrUTF8
	case strings.TrimFunc(id, unicode.IsSpace) != id:
		return ErrSpace
	}
	for _, r := range id {
		if invisible(r) {
			return ErrControl
		}
	}
	return nil
}

// invisible reports characters that render as nothing or as blank space without being
// white space: controls, format characters, default-ignorable code points (Hangul
// fillers, variation selectors) and the braille blank. An id holding one could look
// exactly like another.
func invisible(r rune) bool {
	return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || unicode.Is(unicode.Other_Default_Ignorable_Code_Point, r) ||
		unicode.Is(unicode.Variation_Selector, r) || r == '\u2800' || r == '\u3164' || r == '\uffa0'
}

// Key returns the canonical comparison form of a valid id.
func Key(id string) (string, error) {
	if err := Check(id); err != nil {
		return "", err
	}
	k, err := precis.Nickname.CompareKey(id)
	if err != nil || k == "" {
		return "", ErrDisallowed
	}
	return k, nil
}

// Confusable reports whether a and b could be taken for one identity by a reader: the
// same canonical form, or canonical forms whose Unicode confusable skeletons (UTS #39)
// match, as "alice@example.com" and "аlice@example.com" with a Cyrillic а do.
// Separation of duties uses it, so a look-alike actor cannot be approved by the person
// it imitates; like Same, a malformed id is confusable with nothing.
func Confusable(a, b string) bool {
	ka, err := Key(a)
	if err != nil {
		return false
	}
	kb, err := Key(b)
	if err != nil {
		return false
	}
	return ka == kb || confusables.Skeleton(ka) == confusables.Skeleton(kb)
}

// Skeleton returns the UTS #39 confusable skeleton of id's canonical form: two ids with
// one skeleton could be taken for each other by a reader.
func Skeleton(id string) (string, error) {
	k, err := Key(id)
	if err != nil {
		return "", err
	}
	return confusables.Skeleton(k), nil
}

// Same reports whether a and b name one identity. An id without a canonical form is the
// same as nothing, so a malformed id can never satisfy a comparison.
func Same(a, b string) bool {
	ka, err := Key(a)
	if err != nil {
		return false
	}
	kb, err := Key(b)
	return err == nil && ka == kb
}
