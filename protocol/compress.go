package protocol

// Stream compression on a TCP connection is asked for in the auth frame and
// agreed in its reply:
//
//	auth from the client:   {"token": "...", "compress": "deflate"} (the token
//	                        optional where the server needs none)
//	auth from the server:   {"ok": true, ..., "compress": "deflate"}
//
// Everything the client sends after its auth frame's newline, and
// everything the server sends after that reply's newline, is one raw
// DEFLATE stream (RFC 1951) flushed at every write (a sync flush), carrying
// the same NDJSON frames. A client sends nothing that depends on the answer:
// a server that understands the option always inflates what follows.

// CompressDeflate is the one stream compression the protocol defines: raw
// DEFLATE with a sync flush after each write, which Python's zlib, Node's
// zlib and Go's compress/flate all speak.
const CompressDeflate = "deflate"

// AppendCompressOption adds "compress": algo to the JSON object payload
// (an auth frame's or its reply's); payload must end with '}'.
func AppendCompressOption(payload []byte, algo string) []byte {
	if len(payload) == 0 {
		payload = append(payload, "{}"...)
	}
	payload = payload[:len(payload)-1]
	if len(payload) > 1 { // more than "{"
		payload = append(payload, ',')
	}
	payload = append(payload, `"compress":`...)
	payload = AppendString(payload, algo)
	return append(payload, '}')
}

// ParseCompress reads the "compress" option of an auth payload ("" if none).
func ParseCompress(payload []byte) string { return stringFields(payload, "compress")[0] }
