package gateway

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/secureagentmessaging/samgw/protocol"
)

// httpStatus maps the protocol's error codes to HTTP statuses for the
// route ingress (the body is the error frame's payload).
var httpStatus = map[protocol.Code]int{
	protocol.CodeInvalidJSON:        http.StatusBadRequest,
	protocol.CodeInvalidMessage:     http.StatusBadRequest,
	protocol.CodeUnauthorized:       http.StatusUnauthorized,
	protocol.CodeForbidden:          http.StatusForbidden,
	protocol.CodeNoRoute:            http.StatusNotFound,
	protocol.CodeFrameTooLarge:      http.StatusRequestEntityTooLarge,
	protocol.CodeRateLimited:        http.StatusTooManyRequests,
	protocol.CodeClusterUnavailable: http.StatusServiceUnavailable,
	protocol.CodeHandlerTimeout:     http.StatusGatewayTimeout,
}

// statusOf is the HTTP status of an error frame's code (500 for others).
func statusOf(code protocol.Code) int {
	if s, ok := httpStatus[code]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// Routes returns the handler of POST /v1/routes/{route}: the request body
// (JSON, at most the frame limit) is the payload of a data message on
// that route, served like one from a connection of its own (transport
// "http"): authenticated by "Authorization: Bearer TOKEN" when the server
// has identities, under the identity's ACL and roles, and answered with
// the handler's reply (200, application/json). An error frame becomes the
// status its code maps to, with the frame's payload as the body. The
// connection ends with the reply: a push to it afterwards finds it gone.
//
// timeout bounds a call from its arrival to its answer (the handler's own
// timeout and the wait for a Lua state within it): past it the answer is
// 504.
func (s *Server) Routes(timeout time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		route := strings.TrimPrefix(r.URL.Path, "/v1/routes/")
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			writeError(w, protocol.Errorf(protocol.CodeInvalidMessage, "a route is called with POST"), http.StatusMethodNotAllowed)
			return
		}
		if len(r.TransferEncoding) > 0 {
			// A JSON body of at most the frame limit has a length: a chunked
			// one, with or without a Content-Length the chunking overrides,
			// is what request smuggling through a proxy looks like. The
			// connection ends with the answer (RFC 9112 §6.1).
			w.Header().Set("Connection", "close")
			writeError(w, protocol.Errorf(protocol.CodeInvalidMessage, "Content-Length is required: chunked bodies are refused"), http.StatusLengthRequired)
			return
		}
		if route == "" || !protocol.ValidRoute(route) {
			writeError(w, protocol.Errorf(protocol.CodeNoRoute, "no route %q", truncateField(route, 64)), http.StatusNotFound)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(s.cfg.MaxFrameSize)-httpFrameOverhead))
		var tooLarge *http.MaxBytesError
		switch {
		case errors.As(err, &tooLarge):
			writeError(w, protocol.Errorf(protocol.CodeFrameTooLarge, "the body exceeds %d bytes", tooLarge.Limit), http.StatusRequestEntityTooLarge)
			return
		case err != nil:
			writeError(w, protocol.Errorf(protocol.CodeInvalidMessage, "reading the body: %v", err), http.StatusBadRequest)
			return
		case len(body) == 0:
			body = []byte("null")
		}
		var auth []byte
		if h := r.Header.Get("Authorization"); h != "" {
			token, ok := strings.CutPrefix(h, "Bearer ")
			if !ok || token == "" || len(token) > maxBearerLen {
				writeError(w, protocol.Errorf(protocol.CodeUnauthorized, "Authorization: want Bearer TOKEN"), http.StatusUnauthorized)
				return
			}
			auth = protocol.AppendFrame(nil, &protocol.Message{Type: protocol.TypeAuth, ID: "bearer", Payload: protocol.AppendAuthPayload(nil, token)})
		} else if s.auth != nil {
			writeError(w, protocol.Errorf(protocol.CodeUnauthorized, "Authorization: Bearer TOKEN is required"), http.StatusUnauthorized)
			return
		}
		reply, err := s.call(r, auth, route, body, timeout)
		if err != nil {
			writeError(w, protocol.Errorf(protocol.CodeHandlerTimeout, "no answer within %v: %v", timeout, err), http.StatusGatewayTimeout)
			return
		}
		if reply.Type == protocol.TypeError {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(statusOf(protocol.ParseError(reply.Payload).Code))
			w.Write(reply.Payload) //nolint:errcheck // the client went away
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if reply.Payload == nil {
			w.Write([]byte("null")) //nolint:errcheck // as above
			return
		}
		w.Write(reply.Payload) //nolint:errcheck // as above
	})
}

// httpFrameOverhead is room in a frame for what wraps the body: type,
// id, route, timestamp.
const httpFrameOverhead = 512

// httpCallID is the id of the data frame of an HTTP call.
const httpCallID = "http"

// call serves one HTTP call as a connection of its own: the auth frame (if
// any) and the data frame go in, and the answer to the data frame comes
// back (pushes before it are dropped); then the connection closes.
func (s *Server) call(r *http.Request, auth []byte, route string, body []byte, timeout time.Duration) (*protocol.Message, error) {
	mine, theirs := net.Pipe()
	defer mine.Close()
	s.ServeConn(&pipeConn{Conn: theirs, remote: addrOf(r.RemoteAddr)}, ConnOptions{Transport: TransportHTTP})
	mine.SetDeadline(time.Now().Add(timeout))                       //nolint:errcheck // a pipe takes deadlines
	stop := context.AfterFunc(r.Context(), func() { mine.Close() }) // the client went away
	defer stop()
	frames := append(auth, protocol.AppendFrame(nil, &protocol.Message{Type: protocol.TypeData, ID: httpCallID, Route: route, Payload: body})...)
	wrote := make(chan struct{})
	go func() {
		// The server reads while it writes (pipes do not buffer): the
		// frames go in from here while the answers are read below.
		defer close(wrote)
		mine.Write(frames) //nolint:errcheck // the reader below sees the end
	}()
	defer func() {
		mine.Close() // ends the write if the server stopped reading
		<-wrote
	}()
	rd := bufio.NewReaderSize(mine, 4096)
	for {
		line, err := readLine(rd, s.cfg.MaxFrameSize+httpFrameOverhead)
		if err != nil {
			return nil, fmt.Errorf("the call ended without an answer: %w", err)
		}
		var m protocol.Message
		if protocol.Decode(line, &m, protocol.Limits{MaxFrameSize: s.cfg.MaxFrameSize + httpFrameOverhead}) != nil {
			continue
		}
		switch {
		case m.ID == httpCallID && (m.Type == protocol.TypeData || m.Type == protocol.TypeError):
			return m.Clone(), nil
		case m.Type == protocol.TypeError && (m.ID == "bearer" || m.ID == ""):
			return m.Clone(), nil // refused before the call (unauthorized, rate limited)
		case m.Type == protocol.TypeClose:
			// Closed before answering (shutting down, full): unavailable.
			payload := protocol.AppendErrorPayload(nil, protocol.CodeClusterUnavailable, "closed: "+protocol.ParseClose(m.Payload))
			return &protocol.Message{Type: protocol.TypeError, Payload: payload}, nil
		}
	}
}

// readLine reads one line of at most max bytes.
func readLine(rd *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	for {
		chunk, err := rd.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > max {
			return nil, fmt.Errorf("an answer longer than %d bytes", max)
		}
		switch {
		case err == nil:
			return line[:len(line)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		default:
			return nil, err
		}
	}
}

// writeError answers with an error frame's payload.
func writeError(w http.ResponseWriter, err *protocol.Error, status int) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(protocol.AppendErrorPayload(nil, err.Code, err.Message)) //nolint:errcheck // the client went away
}

// pipeConn is one end of an HTTP call's pipe with the client's address.
type pipeConn struct {
	net.Conn
	remote net.Addr
}

func (c *pipeConn) RemoteAddr() net.Addr { return c.remote }
