import CKernels

/// Finished conversations kept idle so that a request extending one continues its KV state instead of
/// prefilling it again; least recently used dropped first once their KV memory exceeds `capacityBytes`.
///
/// A state is kept only when it is a *valid prefix*: it still holds every token of its history in every
/// layer a method compresses (`holdsEveryToken`). Continuing it then differs from a fresh prefill of the
/// whole conversation only as decoding differs from prefilling (the method attends over the same tokens).
/// So lossless methods (`full`, `rocket-mt`, `hsa`, `quest`, `sparq`, `topk`) are always continued, while an
/// evicting method (`rocket`, `snapkv`, `streaming`, `h2o`) is continued only while it has evicted nothing
/// (for `rocket`: the conversation is still within the prompt budget `B_p`). Once stage 1 has dropped
/// tokens, the next turn's question could need them and evicted tokens never come back: such a
/// conversation is prefilled again from its text, and stage 1 selects with the new question's window.
///
/// Not thread-safe: `BatchScheduler` uses it under its lock.
final class ConversationCache {
    struct Entry {
        let session: InferenceSession
        let kv: KVConfiguration
        let bytes: Int
    }

    var capacityBytes: Int
    /// Least recently used first: a conversation leaves when it is continued and comes back at the end.
    private(set) var entries: [Entry] = []

    init(capacityBytes: Int) { self.capacityBytes = capacityBytes }

    /// Bytes of KV memory held by the idle conversations.
    var bytes: Int { entries.reduce(0) { $0 + $1.bytes } }

    /// Removes and returns the longest conversation of configuration `kv` whose history is a strict prefix of
    /// `tokens` (strict: the new part must be non-empty so that its prefill gives the next logits).
    func take(prefixOf tokens: [Int], kv: KVConfiguration) -> InferenceSession? {
        var best: Int?, bestLength = 0
        for (i, entry) in entries.enumerated() where entry.kv == kv {
            let history = entry.session.history
            if history.count < tokens.count && history.count > bestLength && tokens.starts(with: history) {
                (best, bestLength) = (i, history.count)
            }
        }
        return best.map { entries.remove(at: $0).session }
    }

    /// Keeps `session` if it is a valid prefix and fits; drops the least recently used beyond the capacity.
    /// Returns whether it was kept.
    @discardableResult
    func insert(_ session: InferenceSession, kv: KVConfiguration) -> Bool {
        let bytes = session.policy.statistics.storedBytes
        guard bytes <= capacityBytes, holdsEveryToken(session.policy, count: session.position) else { return false }
        entries.append(Entry(session: session, kv: kv, bytes: bytes))
        var total = self.bytes
        while total > capacityBytes { total -= entries.removeFirst().bytes }
        rk_release_free_memory()
        return true
    }

    func removeAll() {
        entries.removeAll()
        rk_release_free_memory()
    }
}

/// Whether `policy` still holds all `count` tokens of its sequence in every layer a method compresses
/// (sliding-window layers forget by design, as a fresh prefill's would).
func holdsEveryToken(_ policy: KVPolicy, count: Int) -> Bool {
    if let layered = policy as? LayeredKV {
        return layered.caches.allSatisfy { $0 is SlidingWindowKV || holdsEveryToken($0, count: count) }
    }
    guard let inspectable = policy as? KVStreamInspectable else { return false }
    return inspectable.inspectableStreams.allSatisfy { $0.count == count }
}
