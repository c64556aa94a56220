package spool

import "sort"

// queue holds the queued records of one severity, oldest (smallest id)
// first. Ids are time-ordered, so new events almost always go at the
// tail and leases take from the head; a released event usually goes back
// just before the head. Both are O(1); anything else is a binary search.
type queue struct {
	items []*record
	head  int
}

func (q *queue) len() int { return len(q.items) - q.head }

func (q *queue) peek() *record {
	if q.head < len(q.items) {
		return q.items[q.head]
	}
	return nil
}

func (q *queue) pop() *record {
	r := q.peek()
	if r == nil {
		return nil
	}
	q.items[q.head] = nil
	q.head++
	q.compact()
	return r
}

func (q *queue) push(r *record) {
	live := q.items[q.head:]
	n := len(live)
	switch {
	case n == 0 || live[n-1].id < r.id:
		q.items = append(q.items, r)
	case q.head > 0 && r.id < live[0].id:
		q.head--
		q.items[q.head] = r
	default:
		i := sort.Search(n, func(i int) bool { return live[i].id >= r.id })
		q.items = append(q.items, nil)
		live = q.items[q.head:]
		copy(live[i+1:], live[i:])
		live[i] = r
	}
}

// remove takes r out of the queue wherever it is.
func (q *queue) remove(r *record) {
	live := q.items[q.head:]
	i := sort.Search(len(live), func(i int) bool { return live[i].id >= r.id })
	if i >= len(live) || live[i] != r {
		return
	}
	if i == 0 {
		q.pop()
		return
	}
	copy(live[i:], live[i+1:])
	q.items[len(q.items)-1] = nil
	q.items = q.items[:len(q.items)-1]
}

// compact gives back the space before head once it is most of the slice.
func (q *queue) compact() {
	if q.head < 1024 || q.head < len(q.items)/2 {
		if q.head == len(q.items) {
			q.items = q.items[:0]
			q.head = 0
		}
		return
	}
	n := copy(q.items, q.items[q.head:])
	for i := n; i < len(q.items); i++ {
		q.items[i] = nil
	}
	q.items = q.items[:n]
	q.head = 0
}
