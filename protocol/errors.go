package protocol

import (
	"errors"
	"fmt"
)

// Code is the machine-readable reason of an `error` frame, its payload's
// "code" field. The values are the wire strings and must never change.
type Code string

// The error codes.
const (
	// CodeInvalidJSON: the frame is not valid JSON or not valid UTF-8.
	CodeInvalidJSON Code = "invalid_json"
	// CodeInvalidMessage: valid JSON, but not a message: not an object, a
	// field of the wrong type, a duplicated field, or nesting too deep.
	CodeInvalidMessage Code = "invalid_message"
	// CodeUnknownType: the "type" is not one this server knows.
	CodeUnknownType Code = "unknown_type"
	// CodeFrameTooLarge: the frame exceeds the maximum size; the server
	// closes the connection after sending it.
	CodeFrameTooLarge Code = "frame_too_large"
	// CodeHandlerError: the handler of a data message failed.
	CodeHandlerError Code = "handler_error"
	// CodeHandlerTimeout: the handler did not finish within its deadline.
	CodeHandlerTimeout Code = "handler_timeout"
	// CodeNoRoute: no handler serves the message's route.
	CodeNoRoute Code = "no_route"
	// CodeUnauthorized: authentication is required and failed, or did not
	// come first or in time; the connection is closed.
	CodeUnauthorized Code = "unauthorized"
	// CodeForbidden: the identity may not use the message's route.
	CodeForbidden Code = "forbidden"
	// CodeBadSignature: the identity signs its messages and this one's
	// signature is missing or wrong.
	CodeBadSignature Code = "bad_signature"
	// CodeReplay: a signed message's id was already seen, or its timestamp
	// is outside the allowed clock skew.
	CodeReplay Code = "replay"
	// CodeRateLimited: the connection sends data faster than allowed; the
	// message is dropped.
	CodeRateLimited Code = "rate_limited"
	// CodeUpstreamError: a handler's call to an upstream service failed and
	// the handler let the error escape.
	CodeUpstreamError Code = "upstream_error"
	// CodeUpstreamTimeout: as CodeUpstreamError, for a call that timed out.
	CodeUpstreamTimeout Code = "upstream_timeout"
	// CodeClusterUnavailable: a handler needed another node (a send, a
	// broadcast, the shared store) while the cluster was unreachable.
	CodeClusterUnavailable Code = "cluster_unavailable"
	// CodeTLSRequired: a plaintext client reached a TLS port; it is sent in
	// plaintext before the connection closes, so the client can say so.
	CodeTLSRequired Code = "tls_required"
)

// Reserved reports whether code is one of the protocol's own codes, which
// only the gateway may send: an application (a Lua handler's
// error{code = …}) chooses others.
func Reserved(code Code) bool {
	switch code {
	case CodeInvalidJSON, CodeInvalidMessage, CodeUnknownType, CodeFrameTooLarge, CodeHandlerError,
		CodeHandlerTimeout, CodeNoRoute, CodeUnauthorized, CodeForbidden, CodeBadSignature, CodeReplay,
		CodeRateLimited, CodeUpstreamError, CodeUpstreamTimeout, CodeClusterUnavailable, CodeTLSRequired:
		return true
	}
	return false
}

// MaxAppCodeLen bounds an application's error code.
const MaxAppCodeLen = 64

// ValidAppCode reports whether code may be an application's error code:
// 1 to MaxAppCodeLen lowercase letters, digits and underscores, starting
// with a letter, and not Reserved.
func ValidAppCode(code string) bool {
	if code == "" || len(code) > MaxAppCodeLen || code[0] < 'a' || code[0] > 'z' {
		return false
	}
	for i := 1; i < len(code); i++ {
		if c := code[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return !Reserved(Code(code))
}

// Error is a protocol-level failure that is reported to the peer as an
// `error` frame. Its Message is meant for the peer: it never carries
// internals.
type Error struct {
	Code    Code
	Message string
}

func (e *Error) Error() string { return "protocol: " + string(e.Code) + ": " + e.Message }

// Is makes errors.Is match any *Error with the same Code, so the sentinel
// errors below can be compared against errors carrying a detailed message.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// Errorf returns an *Error with the code and a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Sentinel errors, one per code, for errors.Is.
var (
	// ErrInvalidJSON matches every *Error with CodeInvalidJSON.
	ErrInvalidJSON = &Error{Code: CodeInvalidJSON, Message: "invalid JSON"}
	// ErrInvalidMessage matches every *Error with CodeInvalidMessage.
	ErrInvalidMessage = &Error{Code: CodeInvalidMessage, Message: "invalid message"}
	// ErrUnknownType matches every *Error with CodeUnknownType.
	ErrUnknownType = &Error{Code: CodeUnknownType, Message: "unknown message type"}
	// ErrFrameTooLarge matches every *Error with CodeFrameTooLarge.
	ErrFrameTooLarge = &Error{Code: CodeFrameTooLarge, Message: "frame too large"}
)

// CodeOf returns the code of err if it is or wraps an *Error, and
// CodeHandlerError otherwise.
func CodeOf(err error) Code {
	var pe *Error
	if errors.As(err, &pe) {
		return pe.Code
	}
	return CodeHandlerError
}
