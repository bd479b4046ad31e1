package bpf

import "strconv"

// Program identifies one kernel program in the drop ledger. The values
// mirror enum prog_id in include/record.h.
type Program uint32

// Programs with a section in the drop ledger.
const (
	ProgExec Program = iota
	ProgExit
	ProgFork
	ProgTCPRetransmit
	ProgTCPSendReset
	ProgTCPReceiveReset
	ProgTCPState
	ProgOOM
	ProgSyscallProc
	ProgSKBDrop
	ProgSyscalls
	ProgNetIngress
	ProgNetEgress
	ProgBlock
	ProgRunq
	numPrograms = 16 // PROG_MAX: ledger sections, with room to grow
)

var programNames = [...]string{
	ProgExec:            "exec",
	ProgExit:            "exit",
	ProgFork:            "fork",
	ProgTCPRetransmit:   "tcp_retransmit",
	ProgTCPSendReset:    "tcp_send_reset",
	ProgTCPReceiveReset: "tcp_receive_reset",
	ProgTCPState:        "tcp_state",
	ProgOOM:             "oom",
	ProgSyscallProc:     "syscall_proc",
	ProgSKBDrop:         "skb_drop",
	ProgSyscalls:        "syscalls",
	ProgNetIngress:      "net_ingress",
	ProgNetEgress:       "net_egress",
	ProgBlock:           "block",
	ProgRunq:            "runq",
}

// WritesRecords reports whether p writes ring-buffer records, one per
// event emitted; the others count in maps.
func (p Program) WritesRecords() bool { return p <= ProgSyscallProc }

// String returns the program's name as used in metric tags.
func (p Program) String() string {
	if int(p) < len(programNames) && programNames[p] != "" {
		return programNames[p]
	}
	return "program_" + strconv.Itoa(int(p))
}
