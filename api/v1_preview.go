package api

import (
	"net/http"

	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/policy"
)

// POST /v1/messages/preview: what sending a text would put on the air for
// the caller — gateway.Preview, the signing and counting of the send path
// itself, for a recipient if the body names one (to). The console's live
// character counter posts to it on every keystroke: it reads only the
// account (as a send does) and takes no token of the enterprise's rate
// limit.

// PreviewRequest is the body of POST /v1/messages/preview.
type PreviewRequest struct {
	Text string `json:"text"`
	// To is a recipient to count for (optional): the text is counted
	// with the options of the upstream its carrier goes to, and a number
	// the send would refuse is the refusal.
	To string `json:"to,omitempty"`
}

// PreviewResponse is the answer of POST /v1/messages/preview, and a row
// of an upload's preview (UploadPreviewRow).
type PreviewResponse struct {
	Signed   string `json:"signed"`   // the text with the enterprise (and user) signature
	Chars    int    `json:"chars"`    // characters (code points) of signed
	Segments int    `json:"segments"` // the billing count
	// SegmentsMax is the most segments through any upstream: more than
	// segments when, without to, an upstream making its parts another
	// way would count more.
	SegmentsMax int    `json:"segments_max"`
	Encoding    string `json:"encoding"`  // gsm7 | ucs2
	MaxChars    int    `json:"max_chars"` // the most characters a message may have, signatures included
	// Refusal is why the text would be refused (too_long, bad_text); null
	// if it would be sent.
	Refusal *PreviewRefusal `json:"refusal"`
}

// PreviewRefusal is why a previewed text (or row) would be refused.
type PreviewRefusal struct {
	Reason    string `json:"reason"`
	Message   string `json:"message"`
	MessageZH string `json:"message_zh"`
	// DetailZH: the detail in Chinese (the number's province, the count
	// past the limit), when the refusal has one.
	DetailZH string `json:"detail_zh,omitempty"`
}

func (s *Server) previewMessage(c *caller, w http.ResponseWriter, r *http.Request) {
	var req PreviewRequest
	if !s.decodeSend(w, r, &req) {
		return
	}
	p, err := s.preview(c, req.Text, req.To)
	if err != nil {
		writeRefusal(w, err)
		return
	}
	writeJSON(w, http.StatusOK, p)
}

// preview is gateway.Preview as the wire shows it; an error is an
// account-level refusal (disabled, no signature).
func (s *Server) preview(c *caller, text, to string) (PreviewResponse, error) {
	p, err := s.cfg.Gateway.Preview(c.acct, text, to)
	if err != nil {
		return PreviewResponse{}, err
	}
	return previewResponse(p), nil
}

func previewResponse(p gateway.Preview) PreviewResponse {
	out := PreviewResponse{Signed: p.Signed, Chars: p.Chars, Segments: p.Segments, SegmentsMax: p.SegmentsMax, Encoding: p.Coding.String(), MaxChars: p.MaxChars}
	if p.Refusal != nil {
		reason, _, msg := policy.Describe(p.Refusal)
		out.Refusal = &PreviewRefusal{Reason: reason, Message: msg, MessageZH: p.Refusal.Reason.MessageZH(), DetailZH: p.Refusal.DetailZH}
	}
	return out
}

// rowRefusal is the refusal of a row that is refused before it becomes a
// submission (policy's row reasons, or invalid_number for an empty
// number).
func rowRefusal(reason, msg string) *PreviewRefusal {
	if r, ok := policy.ParseReason(reason); ok {
		return &PreviewRefusal{Reason: reason, Message: msg, MessageZH: r.MessageZH()}
	}
	return &PreviewRefusal{Reason: reason, Message: msg, MessageZH: policy.RowReasonZH(reason)}
}
