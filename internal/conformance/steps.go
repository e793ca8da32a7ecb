package conformance

import (
	_ "embed"
	"encoding/json"
	"fmt"
)

//go:embed steps.json
var stepsJSON []byte

// Step is one step of the scenario; which fields matter depends on Step.
// The clients' READMEs and steps.json's own "about" say what each does:
//
//   - connect: to Server, with the token named Token, the certificate named
//     Cert, signing with the key of identity Sign; ExpectError: the code
//     the connection attempt must fail with.
//   - request: Payload (on Route) and wait for the reply: ExpectReply, or
//     the error frame's code ExpectError.
//   - send: Payload, fire and forget (queued while disconnected).
//   - ping: wait for the pong.
//   - expect_data: the next data frames that answered no request carry
//     Payloads, in order (and Route, when given).
//   - stop_server, start_server: Server, gracefully stopped or started
//     again on its port.
//   - wait_disconnected, wait_connected: the client noticed.
//   - disconnect: with Reason.
type Step struct {
	Step        string            `json:"step"`
	Server      string            `json:"server,omitempty"`
	Token       string            `json:"token,omitempty"`
	Cert        string            `json:"cert,omitempty"`
	Sign        string            `json:"sign,omitempty"`
	Route       string            `json:"route,omitempty"`
	Payload     json.RawMessage   `json:"payload,omitempty"`
	Payloads    []json.RawMessage `json:"payloads,omitempty"`
	ExpectReply json.RawMessage   `json:"expect_reply,omitempty"`
	ExpectError string            `json:"expect_error,omitempty"`
	Reason      string            `json:"reason,omitempty"`
	// The mailbox steps: deliver (through route "leave", to To with id
	// ID), connect's ManualAck and ExpectPending, expect_data's IDs, and
	// ack_last (ack the last mailbox message received).
	To            string   `json:"to,omitempty"`
	ID            string   `json:"id,omitempty"`
	ManualAck     bool     `json:"manual_ack,omitempty"`
	ExpectPending *int     `json:"expect_pending,omitempty"`
	IDs           []string `json:"ids,omitempty"`
	// The work queue steps: connect's Worker (handle jobs: record each,
	// fail the first try of one whose payload has fail_once) and
	// expect_jobs (IDs all handled without failing; Attempts: how many
	// times each was handled).
	Worker   bool           `json:"worker,omitempty"`
	Attempts map[string]int `json:"attempts,omitempty"`
	// The topic steps: subscribe (follow Topic with the client's
	// subscribe), expect_data's Topic (publications of it, offsets
	// increasing), expect_resubscribed (the renewal of Topic after a
	// reconnect was answered with Recovered).
	Topic     string `json:"topic,omitempty"`
	Recovered *bool  `json:"recovered,omitempty"`
	// Compress: connect asks for stream compression.
	Compress bool `json:"compress,omitempty"`
}

// Steps returns the scenario of steps.json.
func Steps() ([]Step, error) {
	var doc struct {
		Steps []Step `json:"steps"`
	}
	if err := json.Unmarshal(stepsJSON, &doc); err != nil {
		return nil, fmt.Errorf("steps.json: %w", err)
	}
	return doc.Steps, nil
}
