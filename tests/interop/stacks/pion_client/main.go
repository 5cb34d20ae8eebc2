// A device on Pion WebRTC v3 (Go; Debian's golang-github-pion-webrtc.v3-dev, built in GOPATH mode).
//
//	pion_client OFFER_URL HEADERS_JSON OUT_PREFIX PACKETS_FILE
//
// Same protocol as werift_client.cjs: Opus sendrecv + a data channel, ICE on 127.0.0.1 only, no STUN;
// the pre-encoded 20 ms Opus packets of PACKETS_FILE (2-byte length + payload each) are sent once DTLS
// is up; every received RTP payload goes to OUT_PREFIX.rtp (2-byte seq + 2-byte length + payload),
// the report to OUT_PREFIX.json.
package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/pion/webrtc/v3"
	"github.com/pion/webrtc/v3/pkg/media"
)

func main() {
	url, headersJSON, out, packetsPath := os.Args[1], os.Args[2], os.Args[3], os.Args[4]
	report := map[string]interface{}{"stack": "pion webrtc v3", "answer_accepted": false, "dtls": nil, "datachannel_open": false}
	var mu sync.Mutex
	var recorded bytes.Buffer
	start := time.Now()
	err := run(url, headersJSON, packetsPath, report, &mu, &recorded, start)
	mu.Lock()
	if err != nil {
		report["error"] = err.Error()
	}
	_ = os.WriteFile(out+".rtp", recorded.Bytes(), 0o644)
	data, _ := json.Marshal(report)
	_ = os.WriteFile(out+".json", data, 0o644)
	mu.Unlock()
	if err != nil {
		os.Exit(1)
	}
}

func run(url, headersJSON, packetsPath string, report map[string]interface{}, mu *sync.Mutex, recorded *bytes.Buffer, start time.Time) error {
	var headers map[string]string
	if err := json.Unmarshal([]byte(headersJSON), &headers); err != nil {
		return err
	}
	se := webrtc.SettingEngine{}
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		return err
	}
	api := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(se))
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return err
	}
	defer pc.Close()
	track, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "device")
	if err != nil {
		return err
	}
	if _, err = pc.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendrecv}); err != nil {
		return err
	}
	pc.OnTrack(func(remote *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		for {
			pkt, _, err := remote.ReadRTP()
			if err != nil {
				return
			}
			head := make([]byte, 4)
			binary.BigEndian.PutUint16(head[0:], pkt.SequenceNumber)
			binary.BigEndian.PutUint16(head[2:], uint16(len(pkt.Payload)))
			mu.Lock()
			recorded.Write(head)
			recorded.Write(pkt.Payload)
			mu.Unlock()
		}
	})
	dc, err := pc.CreateDataChannel("oai-events", nil)
	if err != nil {
		return err
	}
	dc.OnOpen(func() {
		mu.Lock()
		report["datachannel_open"] = true
		mu.Unlock()
		_ = dc.SendText(`{"type":"session.update","session":{}}`)
	})
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return err
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err = pc.SetLocalDescription(offer); err != nil {
		return err
	}
	<-gathered
	req, _ := http.NewRequest("POST", url, bytes.NewBufferString(pc.LocalDescription().SDP))
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	req.Header.Set("Content-Type", "application/sdp")
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 201 {
		return fmt.Errorf("POST %d: %s", resp.StatusCode, body)
	}
	if err = pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(body)}); err != nil {
		return err
	}
	mu.Lock()
	report["answer_accepted"] = true
	mu.Unlock()
	dtls := pc.SCTP().Transport()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && dtls.State() != webrtc.DTLSTransportStateConnected && dtls.State() != webrtc.DTLSTransportStateFailed {
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	report["dtls"] = dtls.State().String()
	report["dtls_connected_ms"] = time.Since(start).Milliseconds()
	mu.Unlock()
	if dtls.State() != webrtc.DTLSTransportStateConnected {
		return fmt.Errorf("DTLS %s", dtls.State())
	}
	raw, err := os.ReadFile(packetsPath)
	if err != nil {
		return err
	}
	t0 := time.Now()
	for i, k := 0, 0; i+2 <= len(raw); k++ {
		n := int(binary.BigEndian.Uint16(raw[i:]))
		payload := raw[i+2 : i+2+n]
		i += 2 + n
		time.Sleep(time.Until(t0.Add(time.Duration(k) * 20 * time.Millisecond)))
		if err = track.WriteSample(media.Sample{Data: payload, Duration: 20 * time.Millisecond}); err != nil {
			return err
		}
	}
	time.Sleep(300 * time.Millisecond)
	return nil
}
