package main

import "encoding/json"

// eventID is the CloudEvent id of a message rollguard published: the
// readable command, status or event id. Its Nats-Msg-Id is keyed by the
// signing seed (wire.Signer.MsgID) and says nothing readable.
func eventID(data []byte) string {
	var ev struct {
		ID string `json:"id"`
	}
	if json.Unmarshal(data, &ev) != nil {
		return ""
	}
	return ev.ID
}
