package operator

import (
	"context"
	"fmt"

	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/runtime"
	eventsv1client "k8s.io/client-go/kubernetes/typed/events/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/recorder"
)

// EventWriters is how many Event writes keysmith has in flight at most. client-go's broadcaster sends
// each Event from a goroutine of its own, so a burst of issuances (a thousand ApiKeys applied at once,
// a rotation storm) would otherwise open as many concurrent requests and compete with the writes that
// issue keys. Events wait their turn instead; none is dropped for it.
const EventWriters = 2

// newEventRecorder builds keysmith's events.k8s.io/v1 recorder: Events go out as protobuf (cheaper for the
// API server to decode than JSON), at most EventWriters at a time. The broadcaster records from the
// manager's start until it stops.
func newEventRecorder(mgr manager.Manager, cfg *rest.Config, scheme *runtime.Scheme, name string) (recorder.EventRecorder, error) {
	pcfg := rest.CopyConfig(cfg)
	pcfg.ContentType = runtime.ContentTypeProtobuf
	pcfg.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	cl, err := eventsv1client.NewForConfigAndClient(pcfg, mgr.GetHTTPClient())
	if err != nil {
		return nil, err
	}
	b := events.NewBroadcaster(&boundedSink{sink: &events.EventSinkImpl{Interface: cl}, slots: make(chan struct{}, EventWriters)})
	// Recording starts now, as controller-runtime's own recorder does, so that no Event emitted early is
	// lost (the broadcaster drops what nobody records); it stops with the manager, on every replica.
	ctx, cancel := context.WithCancel(context.Background())
	if err := b.StartRecordingToSinkWithContext(ctx); err != nil {
		cancel()
		return nil, err
	}
	if err := mgr.Add(&eventRecording{broadcaster: b, cancel: cancel}); err != nil {
		cancel()
		return nil, err
	}
	rec, ok := b.NewRecorder(scheme, name).(recorder.EventRecorder)
	if !ok {
		return nil, fmt.Errorf("client-go's event recorder does not record annotated events")
	}
	return rec, nil
}

// eventRecording stops the broadcaster when the manager stops.
type eventRecording struct {
	broadcaster events.EventBroadcaster
	cancel      context.CancelFunc
}

func (e *eventRecording) Start(ctx context.Context) error {
	<-ctx.Done()
	e.broadcaster.Shutdown()
	e.cancel()
	return nil
}

// NeedLeaderElection is false: the recorder belongs to every replica, leader or not.
func (e *eventRecording) NeedLeaderElection() bool { return false }

// boundedSink passes writes to sink, at most cap(slots) at a time.
type boundedSink struct {
	sink  events.EventSink
	slots chan struct{}
}

// write runs one write to the sink once a slot is free, or gives up when ctx ends first.
func (s *boundedSink) write(ctx context.Context, do func() (*eventsv1.Event, error)) (*eventsv1.Event, error) {
	select {
	case s.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-s.slots }()
	return do()
}

func (s *boundedSink) Create(ctx context.Context, ev *eventsv1.Event) (*eventsv1.Event, error) {
	return s.write(ctx, func() (*eventsv1.Event, error) { return s.sink.Create(ctx, ev) })
}

func (s *boundedSink) Update(ctx context.Context, ev *eventsv1.Event) (*eventsv1.Event, error) {
	return s.write(ctx, func() (*eventsv1.Event, error) { return s.sink.Update(ctx, ev) })
}

func (s *boundedSink) Patch(ctx context.Context, ev *eventsv1.Event, data []byte) (*eventsv1.Event, error) {
	return s.write(ctx, func() (*eventsv1.Event, error) { return s.sink.Patch(ctx, ev, data) })
}
