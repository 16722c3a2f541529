package protocol

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/pushgw/pushgw/pkg/token"
	"github.com/pushgw/pushgw/proto/clientpb"
)

// docPath is the protocol document whose annotated hex dumps this test
// regenerates from the codec, so the document cannot drift from the code.
const docPath = "../../docs/protocol.md"

var updateDoc = flag.Bool("update-doc", false, "rewrite the hex dumps in "+docPath)

// Fixed values of the documented exchange.
const (
	docSecret = "demo-secret-0123456789"
	docIat    = 1767225600 // 2026-01-01T00:00:00Z
	docMsgID  = 7413884066734080001
)

func docToken(t *testing.T) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"app": "demo", "sub": "alice", "dev": "phone-1", "iat": docIat, "exp": docIat + 3600,
	}).SignedString([]byte(docSecret))
	if err != nil {
		t.Fatal(err)
	}
	// It must be a token the room accepts.
	c, err := token.Verify(tok, func(app string) ([]byte, bool) { return []byte(docSecret), app == "demo" }, time.Unix(docIat, 0))
	if err != nil || c.User != "alice" || c.Device != "phone-1" {
		t.Fatalf("doc token does not verify: %+v %v", c, err)
	}
	return tok
}

type docFrame struct {
	name string
	op   Op
	seq  uint32
	body proto.Message
}

func docExchange(t *testing.T) []docFrame {
	return []docFrame{
		{"AUTH", OpAuth, 1, &clientpb.Auth{Token: docToken(t), Device: "phone-1", Platform: "ios/17.4", SdkVersion: "pushgw-go/1"}},
		{"AUTH_REPLY", OpAuthReply, 1, &clientpb.AuthReply{SessionId: "room-1/42", HeartbeatSeconds: 30, ServerTimeMs: docIat*1000 + 12, MaxInflight: 64}},
		{"PUSH", OpPush, 0, &clientpb.Push{Id: docMsgID, App: "demo", Payload: []byte("hello"), Qos: 1, CreatedMs: docIat*1000 + 500, ExpiresMs: docIat*1000 + 60500}},
		{"ACK", OpAck, 2, &clientpb.Ack{Ids: []uint64{docMsgID}}},
		{"PING", OpPing, 3, nil},
		{"PONG", OpPong, 3, nil},
	}
}

const commentCol = 50

func line(sb *strings.Builder, b []byte, comment string) {
	h := hex.EncodeToString(b)
	var sp []string
	for i := 0; i < len(h); i += 2 {
		sp = append(sp, h[i:i+2])
	}
	s := strings.Join(sp, " ")
	if comment == "" {
		fmt.Fprintln(sb, s)
		return
	}
	fmt.Fprintf(sb, "%-*s%s\n", commentCol, s, comment)
}

var wireNames = map[protowire.Type]string{protowire.VarintType: "varint", protowire.BytesType: "len"}

// dumpFrame annotates an encoded frame field by field.
func dumpFrame(t *testing.T, b []byte, body proto.Message) string {
	t.Helper()
	var sb strings.Builder
	h, err := ParseHeader(b, 0)
	if err != nil {
		t.Fatal(err)
	}
	line(&sb, b[0:2], `magic "PG"`)
	line(&sb, b[2:3], fmt.Sprintf("version %d", h.Version))
	line(&sb, b[3:4], fmt.Sprintf("op %d = %s", h.Op, h.Op))
	line(&sb, b[4:6], fmt.Sprintf("flags %d", h.Flags))
	line(&sb, b[6:10], fmt.Sprintf("seq %d", h.Seq))
	line(&sb, b[10:14], fmt.Sprintf("body length %d", h.Length))
	if body == nil {
		return sb.String()
	}
	fields := body.ProtoReflect().Descriptor().Fields()
	rest := b[HeaderSize:]
	for len(rest) > 0 {
		num, typ, n := protowire.ConsumeTag(rest)
		if n < 0 {
			t.Fatal(protowire.ParseError(n))
		}
		fd := fields.ByNumber(num)
		tag := rest[:n]
		rest = rest[n:]
		head := fmt.Sprintf("field %d %s (%s)", num, fd.Name(), wireNames[typ])
		switch typ {
		case protowire.VarintType:
			v, m := protowire.ConsumeVarint(rest)
			line(&sb, append(append([]byte{}, tag...), rest[:m]...), fmt.Sprintf("%s = %d", head, v))
			rest = rest[m:]
		case protowire.BytesType:
			l, m := protowire.ConsumeVarint(rest)
			line(&sb, append(append([]byte{}, tag...), rest[:m]...), fmt.Sprintf("%s, %d bytes:", head, l))
			val := rest[m : m+int(l)]
			rest = rest[m+int(l):]
			if fd.IsList() && fd.Kind() == protoreflect.Uint64Kind { // packed
				for len(val) > 0 {
					v, k := protowire.ConsumeVarint(val)
					line(&sb, val[:k], fmt.Sprintf("  %d", v))
					val = val[k:]
				}
				continue
			}
			for len(val) > 0 {
				k := min(16, len(val))
				line(&sb, val[:k], "  "+fmt.Sprintf("%q", val[:k]))
				val = val[k:]
			}
		default:
			t.Fatalf("unexpected wire type %d", typ)
		}
	}
	return sb.String()
}

var hexByte = regexp.MustCompile(`^[0-9a-f]{2}$`)

// parseDump reads the bytes back from a dump: hex pairs up to the comment.
func parseDump(s string) []byte {
	var out []byte
	for _, l := range strings.Split(s, "\n") {
		if len(l) > commentCol {
			l = l[:commentCol]
		}
		for _, tok := range strings.Fields(l) {
			if !hexByte.MatchString(tok) {
				break
			}
			b, _ := hex.DecodeString(tok)
			out = append(out, b...)
		}
	}
	return out
}

func TestProtocolDocHexDumps(t *testing.T) {
	doc, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatal(err)
	}
	text := string(doc)
	claims, err := base64.RawURLEncoding.DecodeString(strings.Split(docToken(t), ".")[1])
	if err != nil || !strings.Contains(text, "claims  "+string(claims)+"\n") {
		t.Errorf("%s does not show the token's claims %s", docPath, claims)
	}
	for _, f := range docExchange(t) {
		b, err := AppendMessage(nil, f.op, f.seq, f.body)
		if err != nil {
			t.Fatal(err)
		}
		want := dumpFrame(t, b, f.body)
		if !bytes.Equal(parseDump(want), b) {
			t.Fatalf("%s: dump does not parse back to the frame", f.name)
		}
		// The dump must decode as the frame it claims to be.
		df, _, err := Decode(parseDump(want), 0)
		if err != nil || df.Op != f.op {
			t.Fatalf("%s: %v", f.name, err)
		}
		marker := "<!-- dump:" + f.name + " -->\n```text\n"
		i := strings.Index(text, marker)
		if i < 0 {
			t.Fatalf("%s lacks the block %q", docPath, marker)
		}
		start := i + len(marker)
		end := strings.Index(text[start:], "```")
		if end < 0 {
			t.Fatalf("%s: unterminated %s block", docPath, f.name)
		}
		got := text[start : start+end]
		if got != want {
			if *updateDoc {
				text = text[:start] + want + text[start+end:]
				continue
			}
			t.Errorf("%s: hex dump of %s is stale; run: go test ./pkg/protocol -run TestProtocolDocHexDumps -update-doc\nwant:\n%s", docPath, f.name, want)
		}
	}
	if *updateDoc {
		if err := os.WriteFile(docPath, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestProtocolDocCodes checks every error code is in the document's table.
func TestProtocolDocCodes(t *testing.T) {
	doc, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range Codes() {
		row := fmt.Sprintf("| %d | `%s` |", uint32(c), c)
		if !strings.Contains(string(doc), row) {
			t.Errorf("%s: no table row starting %q", docPath, row)
		}
	}
	for op := Op(1); op <= opMax; op++ {
		row := fmt.Sprintf("| %d | `%s` |", op, op)
		if !strings.Contains(string(doc), row) {
			t.Errorf("%s: no table row starting %q", docPath, row)
		}
	}
}
