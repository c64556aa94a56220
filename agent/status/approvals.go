package status

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/dcagent/dcagent/agent/audit"
	"github.com/dcagent/dcagent/agent/policy"
)

// IDParams are the params of approve and deny.
type IDParams struct {
	ID string `json:"id"`
}

// AnswerResult is the result of approve and deny.
type AnswerResult struct {
	ID       string `json:"id"`
	Approved bool   `json:"approved"`
	By       string `json:"by"`
}

// RegisterApprovals adds the methods that answer requests policy sent to a
// local person: "pending" (anyone: the waiting requests), "approve" and
// "deny" (approvers only; params {"id": ID}).
func RegisterApprovals(s *Server, a *policy.Approvals) {
	s.Register("pending", Anyone, func(context.Context, Peer, json.RawMessage) (any, error) {
		return a.Pending(), nil
	})
	answer := func(approve bool) Handler {
		return func(_ context.Context, p Peer, params json.RawMessage) (any, error) {
			var in IDParams
			if err := json.Unmarshal(params, &in); err != nil || in.ID == "" {
				return nil, errors.New(`params must be {"id": ID}`)
			}
			if err := a.Answer(in.ID, approve, p.String()); err != nil {
				return nil, err
			}
			return AnswerResult{ID: in.ID, Approved: approve, By: p.String()}, nil
		}
	}
	s.Register("approve", Approvers, answer(true))
	s.Register("deny", Approvers, answer(false))
}

// VerifyResult is the result of "audit_verify".
type VerifyResult struct {
	File           string `json:"file"`
	Records        int    `json:"records"`
	LogID          string `json:"log_id"`
	LastSeq        uint64 `json:"last_seq"`
	Anchored       bool   `json:"anchored"`
	CounterChecked bool   `json:"counter_checked"`
	CounterBehind  uint64 `json:"counter_behind,omitempty"`
	OK             bool   `json:"ok"`
	Problem        string `json:"problem,omitempty"`
	ProblemLine    int    `json:"problem_line,omitempty"`
	ProblemSeq     uint64 `json:"problem_seq,omitempty"`
	// Recovered is the problem that made the daemon set a broken log aside
	// at start, if any.
	Recovered string `json:"recovered,omitempty"`
}

// RegisterAudit adds "audit_verify" (anyone): the daemon verifies its live
// log, including the TPM counter it holds the connection to.
func RegisterAudit(s *Server, l *audit.Log) {
	s.Register("audit_verify", Anyone, func(context.Context, Peer, json.RawMessage) (any, error) {
		rep, err := l.Verify()
		var te *audit.TamperError
		if err != nil && !errors.As(err, &te) {
			return nil, err
		}
		return NewVerifyResult(rep, l.Recovered()), nil
	})
}

// NewVerifyResult summarises a verification report.
func NewVerifyResult(rep *audit.Report, recovered *audit.TamperError) VerifyResult {
	v := VerifyResult{File: rep.File, Records: rep.Records, LogID: rep.LogID, LastSeq: rep.Last.Seq, Anchored: rep.Anchored,
		CounterChecked: rep.CounterChecked, CounterBehind: rep.CounterBehind, OK: rep.OK()}
	if p := rep.Problem; p != nil {
		v.Problem, v.ProblemLine, v.ProblemSeq = p.Error(), p.Line, p.Seq
	}
	if recovered != nil {
		v.Recovered = recovered.Error()
	}
	return v
}
