package heartbeat

import "github.com/vishvananda/netns"

func defaultNetworkWatch() NetworkWatch { return NetlinkWatch(netns.None()) }
