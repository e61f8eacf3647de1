// Package telemetry holds the gateway's OpenTelemetry plumbing: spans are
// children of the span in the request's context and come from that span's
// own TracerProvider, so that with Caddy's tracing directive they join
// Caddy's traces and without it they cost next to nothing. Nothing here
// touches OTel's global state.
package telemetry

import (
	"context"
	"net/http"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Instrumentation names the tracer of this project's spans.
const Instrumentation = "github.com/fhirimaging/caddy-fhir-imaging"

// propagator writes the W3C traceparent (and baggage) on outgoing requests.
var propagator = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})

// StartSpan starts a child of the span in ctx.
func StartSpan(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	tp := trace.SpanFromContext(ctx).TracerProvider()
	return tp.Tracer(Instrumentation).Start(ctx, name, trace.WithAttributes(attrs...))
}

// End records err, if any, on the span and ends it.
func End(span trace.Span, err error) {
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// Inject puts the span context of ctx on outgoing request headers, so the
// FHIR server and the archives continue the trace.
func Inject(ctx context.Context, h http.Header) {
	propagator.Inject(ctx, propagation.HeaderCarrier(h))
}
