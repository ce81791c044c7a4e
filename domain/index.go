package domain

// The aggregate keeps every live message of a queue (ready, delayed or
// leased) in a slab of fixed-size, pointer-free slots: a million messages
// cost a few tens of megabytes and nothing for the garbage collector to
// scan. Three binary heaps of slot numbers order them:
//
//   - ready: messages not leased, by (available at, stream version) — the
//     top is the next message to lease; delayed messages simply sit below
//     the ready ones until their time comes;
//   - leased: leased messages by (deadline, stream version);
//   - retention: every live message by (expires at, stream version).
//
// A slot is in exactly one of ready and leased, so one index field (hi)
// serves both.

const (
	flagLive uint8 = 1 << iota
	flagLeased
	flagDeadLetterOrigin
)

type slot struct {
	id   messageID
	ver  int64 // stream version of the message's MessagePublished
	pos  int64 // global position of that event; 0 until its append commits
	due  int64 // unix ms: available at (not leased) or lease deadline (leased)
	exp  int64 // unix ms: retention deadline
	recv int32 // receive count
	hi   int32 // index in the ready or leased heap
	ri   int32 // index in the retention heap
	flag uint8
}

type slab struct {
	slots []slot
	free  []uint32
	byID  map[messageID]uint32
}

func (s *slab) lookup(id messageID) (uint32, bool) {
	i, ok := s.byID[id]
	return i, ok
}

func (s *slab) alloc(v slot) uint32 {
	if s.byID == nil {
		s.byID = make(map[messageID]uint32)
	}
	var i uint32
	if n := len(s.free); n > 0 {
		i = s.free[n-1]
		s.free = s.free[:n-1]
		s.slots[i] = v
	} else {
		i = uint32(len(s.slots))
		s.slots = append(s.slots, v)
	}
	s.byID[v.id] = i
	return i
}

func (s *slab) release(i uint32) {
	delete(s.byID, s.slots[i].id)
	s.slots[i] = slot{}
	s.free = append(s.free, i)
}

func (s *slab) len() int { return len(s.byID) }

// heapKind selects the ordering and the index field of a slotHeap.
type heapKind uint8

const (
	byDue heapKind = iota // ready and leased heaps: (due, ver), index hi
	byExp                 // retention heap: (exp, ver), index ri
)

type slotHeap struct {
	kind  heapKind
	items []uint32
}

func (h *slotHeap) less(s []slot, a, b uint32) bool {
	x, y := &s[a], &s[b]
	if h.kind == byExp {
		if x.exp != y.exp {
			return x.exp < y.exp
		}
		return x.ver < y.ver
	}
	if x.due != y.due {
		return x.due < y.due
	}
	return x.ver < y.ver
}

func (h *slotHeap) setIndex(s []slot, i uint32, at int) {
	if h.kind == byExp {
		s[i].ri = int32(at)
	} else {
		s[i].hi = int32(at)
	}
}

func (h *slotHeap) index(s []slot, i uint32) int {
	if h.kind == byExp {
		return int(s[i].ri)
	}
	return int(s[i].hi)
}

func (h *slotHeap) len() int { return len(h.items) }

func (h *slotHeap) top() (uint32, bool) {
	if len(h.items) == 0 {
		return 0, false
	}
	return h.items[0], true
}

func (h *slotHeap) push(s []slot, i uint32) {
	h.items = append(h.items, i)
	h.setIndex(s, i, len(h.items)-1)
	h.up(s, len(h.items)-1)
}

func (h *slotHeap) remove(s []slot, i uint32) {
	at := h.index(s, i)
	last := len(h.items) - 1
	if at != last {
		h.swap(s, at, last)
	}
	h.items = h.items[:last]
	if at != last {
		if !h.down(s, at) {
			h.up(s, at)
		}
	}
	h.setIndex(s, i, -1)
	h.shrink()
}

// shrink gives back the backing array once a heap has emptied out a lot,
// so that a burst of a million messages does not pin memory forever.
func (h *slotHeap) shrink() {
	if c := cap(h.items); c > 1024 && len(h.items) < c/4 {
		h.items = append(make([]uint32, 0, c/2), h.items...)
	}
}

func (h *slotHeap) swap(s []slot, a, b int) {
	h.items[a], h.items[b] = h.items[b], h.items[a]
	h.setIndex(s, h.items[a], a)
	h.setIndex(s, h.items[b], b)
}

func (h *slotHeap) up(s []slot, j int) {
	for j > 0 {
		p := (j - 1) / 2
		if !h.less(s, h.items[j], h.items[p]) {
			return
		}
		h.swap(s, j, p)
		j = p
	}
}

func (h *slotHeap) down(s []slot, j int) bool {
	start := j
	n := len(h.items)
	for {
		l := 2*j + 1
		if l >= n {
			break
		}
		c := l
		if r := l + 1; r < n && h.less(s, h.items[r], h.items[l]) {
			c = r
		}
		if !h.less(s, h.items[c], h.items[j]) {
			break
		}
		h.swap(s, j, c)
		j = c
	}
	return j > start
}

// dueBefore returns, earliest first, the slots whose key (due or exp) is
// ≤ t, at most limit of them, without changing the heap. It is a best-first
// walk from the root, so it costs O(limit · log limit) however many slots
// are due — a scheduler that works through a backlog in batches stays
// linear.
func (h *slotHeap) dueBefore(s []slot, t int64, limit int) []uint32 {
	key := func(j int) int64 {
		if h.kind == byExp {
			return s[h.items[j]].exp
		}
		return s[h.items[j]].due
	}
	var out []uint32
	// frontier holds heap positions, itself a min-heap by the slots' order.
	var frontier []int
	fless := func(a, b int) bool { return h.less(s, h.items[frontier[a]], h.items[frontier[b]]) }
	fpush := func(j int) {
		if j >= len(h.items) || key(j) > t {
			return
		}
		frontier = append(frontier, j)
		for c := len(frontier) - 1; c > 0; {
			p := (c - 1) / 2
			if !fless(c, p) {
				break
			}
			frontier[c], frontier[p] = frontier[p], frontier[c]
			c = p
		}
	}
	fpop := func() int {
		j := frontier[0]
		last := len(frontier) - 1
		frontier[0] = frontier[last]
		frontier = frontier[:last]
		for c := 0; ; {
			l := 2*c + 1
			if l >= len(frontier) {
				break
			}
			m := l
			if r := l + 1; r < len(frontier) && fless(r, l) {
				m = r
			}
			if !fless(m, c) {
				break
			}
			frontier[c], frontier[m] = frontier[m], frontier[c]
			c = m
		}
		return j
	}
	fpush(0)
	for len(frontier) > 0 && len(out) < limit {
		j := fpop()
		out = append(out, h.items[j])
		fpush(2*j + 1)
		fpush(2*j + 2)
	}
	return out
}
