package otlp

// NewWholeReceiver is NewReceiver with the streaming decoder off: pdata
// decodes every protobuf export whole, as the reference.
func NewWholeReceiver(cfg Config) *Receiver {
	r := NewReceiver(cfg)
	r.wholeOnly = true
	return r
}
