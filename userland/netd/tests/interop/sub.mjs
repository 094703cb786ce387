// An independent gossipsub implementation (js-libp2p + @libp2p/gossipsub) joins a Havn
// node, subscribes to a receipt topic and prints the hex of the first message it reads.
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { gossipsub } from '@libp2p/gossipsub'
import { multiaddr } from '@multiformats/multiaddr'

// js-libp2p 3 targets Node.js 22; this machine's Node.js 20 lacks one builtin it uses.
if (!Promise.withResolvers) {
  Promise.withResolvers = function () {
    let resolve, reject
    const promise = new Promise((res, rej) => { resolve = res; reject = rej })
    return { promise, resolve, reject }
  }
}

const [addr, topic] = process.argv.slice(2)
const node = await createLibp2p({
  addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: {
    identify: identify(),
    pubsub: gossipsub({ globalSignaturePolicy: 'StrictNoSign', allowPublishToZeroTopicPeers: true, emitSelf: false })
  }
})
node.services.pubsub.addEventListener('message', (evt) => {
  if (evt.detail.topic === topic) {
    console.log('MESSAGE ' + Buffer.from(evt.detail.data).toString('hex'))
    process.exit(0)
  }
})
node.services.pubsub.subscribe(topic)
await node.dial(multiaddr(addr))
console.log('JOINED ' + node.peerId.toString())
setTimeout(() => { console.log('TIMEOUT'); process.exit(1) }, 60000)
