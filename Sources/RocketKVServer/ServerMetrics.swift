import CoreMetrics
import Foundation
import Prometheus
import RocketKV

/// The server's figures, through swift-metrics into a Prometheus registry of its own (no process-wide
/// bootstrap, so several servers, e.g. in tests, keep separate figures).
final class ServerMetrics: Sendable {
    let registry = PrometheusCollectorRegistry()
    private let factory: PrometheusMetricsFactory
    private let promptTokens, completionTokens, cachedTokens, cacheHits: CoreMetrics.Counter
    private let decodeSpeed: CoreMetrics.Recorder
    private let active, queued, idleConversations: CoreMetrics.Gauge
    /// Methods whose stored-bytes gauge has been written (kept at 0 once they hold nothing).
    private let methods = NSLock()
    nonisolated(unsafe) private var seenMethods: Set<String> = []

    init() {
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultValueHistogramBuckets = [5, 10, 20, 40, 80, 160, 320, 640]
        self.factory = factory
        promptTokens = CoreMetrics.Counter(label: "rocketkv_prompt_tokens_total", factory: factory)
        completionTokens = CoreMetrics.Counter(label: "rocketkv_completion_tokens_total", factory: factory)
        cachedTokens = CoreMetrics.Counter(label: "rocketkv_cached_prompt_tokens_total", factory: factory)
        cacheHits = CoreMetrics.Counter(label: "rocketkv_conversation_cache_hits_total", factory: factory)
        decodeSpeed = CoreMetrics.Recorder(label: "rocketkv_decode_tokens_per_second", factory: factory)
        active = CoreMetrics.Gauge(label: "rocketkv_sequences_active", factory: factory)
        queued = CoreMetrics.Gauge(label: "rocketkv_sequences_queued", factory: factory)
        idleConversations = CoreMetrics.Gauge(label: "rocketkv_idle_conversations", factory: factory)
    }

    /// One answered request of `endpoint` with HTTP `status`.
    func request(endpoint: String, status: Int) {
        CoreMetrics.Counter(label: "rocketkv_requests_total", dimensions: [("endpoint", endpoint), ("status", String(status))], factory: factory).increment()
    }

    /// A finished generation.
    func generation(_ report: GenerationReport) {
        promptTokens.increment(by: Int64(report.result.promptTokens + report.cachedTokens))
        completionTokens.increment(by: Int64(report.result.tokens.count))
        if report.cachedTokens > 0 {
            cacheHits.increment()
            cachedTokens.increment(by: Int64(report.cachedTokens))
        }
        if report.result.decodeSteps > 0 { decodeSpeed.record(report.result.decodeTokensPerSecond) }
    }

    /// The Prometheus text, with the scheduler's gauges as of now.
    func exposition(status: SchedulerStatus?) -> [UInt8] {
        if let status {
            active.record(status.active)
            queued.record(status.queued)
            idleConversations.record(status.idleConversations)
            let names = methods.withLock { seenMethods.formUnion(status.kvBytesByMethod.keys); return seenMethods }
            for method in names {
                CoreMetrics.Gauge(label: "rocketkv_kv_bytes_stored", dimensions: [("method", method)], factory: factory)
                    .record(status.kvBytesByMethod[method] ?? 0)
            }
        }
        return registry.emitToBuffer()
    }
}
