import CKernels
import Dispatch
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The machine's memory read bandwidth, for the bench's bound (tok/s ≤ bandwidth / bytes read per token).
public enum MemoryBandwidth {
    /// Best of four streaming reads of a `bytes` buffer (far larger than the caches), split across the pool.
    public static func measureRead(bytes: Int = 512 << 20) -> Double {
        let page = 4096
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: page)
        defer { buffer.deallocate() }
        memset(buffer, 1, bytes)
        nonisolated(unsafe) let memory = buffer   // only read by the tasks
        var best = 0.0
        for _ in 0..<4 {
            let start = DispatchTime.now().uptimeNanoseconds
            ThreadPool.parallelFor(bytes / page) { pages in
                _ = rk_stream_read(memory + pages.lowerBound * page, pages.count * page)
            }
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            best = max(best, Double(bytes) / seconds)
        }
        return best
    }
}
