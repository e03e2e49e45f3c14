/**
 * What makes a dispatch cheap to record: bind groups cached by pipeline and bound ranges, and uniforms kept in a
 * content-addressed arena (the same bytes get the same slot, so a steady-state step writes no uniforms and its
 * bind groups repeat). New slots are staged in a host array and uploaded with one `writeBuffer` before submit.
 *
 * @module
 */

import type { Binding } from "./dispatch.ts";

/**
 * Bytes of the uniform arena; when full it is emptied after a submit.
 *
 * @example
 * ```ts
 * import { UNIFORM_ARENA_BYTES } from "@qlora/webgpu/gpu";
 * import assert from "node:assert/strict";
 * assert.equal(UNIFORM_ARENA_BYTES % 256, 0);
 * ```
 */
export const UNIFORM_ARENA_BYTES = 1 << 20;
/** Cached bind groups past which the cache starts over (varying uniforms would otherwise grow it forever). */
const MAX_BIND_GROUPS = 8192;

/**
 * Bind groups and uniform slots of one device, for `Gpu.dispatch`.
 *
 * @example The same bindings give the same bind group
 * ```ts
 * import { BindCache } from "@qlora/webgpu/gpu";
 * import assert from "node:assert/strict";
 * const device = await (await navigator.gpu.requestAdapter())!.requestDevice();
 * const uniforms = device.createBuffer({ size: 1 << 20, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
 * const cache = new BindCache(device, uniforms, 256);
 * const module = device.createShaderModule({ code: "@group(0) @binding(0) var<uniform> u: vec4<u32>;" +
 *   "@compute @workgroup_size(1) fn main() { _ = u.x; }" });
 * const pipeline = device.createComputePipeline({ layout: "auto", compute: { module, entryPoint: "main" } });
 * const a = cache.bindGroup(pipeline, 0, [new Uint32Array([1, 2, 3, 4])], "k");
 * assert.equal(cache.bindGroup(pipeline, 0, [new Uint32Array([1, 2, 3, 4])], "k"), a);
 * assert.equal(cache.upload(), true);
 * ```
 */
export class BindCache {
  readonly #device: GPUDevice;
  readonly #uniforms: GPUBuffer;
  readonly #align: number;
  readonly #stage = new Uint8Array(UNIFORM_ARENA_BYTES);
  #slots = new Map<string, number>();
  #used = 0;
  #dirtyFrom = UNIFORM_ARENA_BYTES;
  #dirtyTo = 0;
  #groups = new Map<string, GPUBindGroup>();
  #keysOf = new Map<GPUBuffer, string[]>();
  #ids = new WeakMap<GPUBuffer, number>();
  #nextId = 1;

  /**
   * Creates the cache.
   *
   * @param device The device.
   * @param uniforms The arena buffer (`UNIFORM | COPY_DST`, {@linkcode UNIFORM_ARENA_BYTES} bytes).
   * @param align Uniform offset alignment (at least 256 and `minUniformBufferOffsetAlignment`).
   */
  constructor(device: GPUDevice, uniforms: GPUBuffer, align: number) {
    this.#device = device;
    this.#uniforms = uniforms;
    this.#align = align;
  }

  /**
   * The bind group for `pipeline` (with id `pipelineId`) and `bindings`: cached, or made now.
   *
   * @returns The bind group; null when the uniform arena is full (upload, submit, {@linkcode BindCache.reset}, retry).
   */
  bindGroup(pipeline: GPUComputePipeline, pipelineId: number, bindings: Binding[], label: string): GPUBindGroup | null {
    const entries: GPUBindGroupEntry[] = [];
    let key = `${pipelineId}`;
    for (let binding = 0; binding < bindings.length; binding++) {
      const b = bindings[binding];
      let resource: GPUBufferBinding;
      if (ArrayBuffer.isView(b)) {
        const offset = this.#slot(b);
        if (offset < 0) return null;
        resource = { buffer: this.#uniforms, offset, size: Math.ceil(b.byteLength / 16) * 16 };
      } else if ("buffer" in b) {
        resource = b;
      } else {
        // Not `instanceof GPUBuffer`: the accounting-only device's buffers are plain objects.
        resource = { buffer: b };
      }
      key += `|${this.#id(resource.buffer)}:${resource.offset ?? 0}:${resource.size ?? -1}`;
      entries.push({ binding, resource });
    }
    let group = this.#groups.get(key);
    if (group) return group;
    if (this.#groups.size >= MAX_BIND_GROUPS) this.#forgetGroups();
    group = this.#device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries, label });
    this.#groups.set(key, group);
    for (const e of entries) {
      const buf = (e.resource as GPUBufferBinding).buffer;
      if (buf === this.#uniforms) continue;
      const keys = this.#keysOf.get(buf);
      if (keys) keys.push(key);
      else this.#keysOf.set(buf, [key]);
    }
    return group;
  }

  /** Drops the bind groups that bind `buffer` (before it is destroyed). */
  forget(buffer: GPUBuffer): void {
    const keys = this.#keysOf.get(buffer);
    if (!keys) return;
    this.#keysOf.delete(buffer);
    for (const k of keys) this.#groups.delete(k);
  }

  /** Writes the uniform slots made since the last upload (one `writeBuffer`); true if there were any. */
  upload(): boolean {
    if (this.#dirtyTo <= this.#dirtyFrom) return false;
    const from = this.#dirtyFrom;
    this.#device.queue.writeBuffer(this.#uniforms, from, this.#stage, from, this.#dirtyTo - from);
    this.#dirtyFrom = UNIFORM_ARENA_BYTES;
    this.#dirtyTo = 0;
    return true;
  }

  /** Empties the uniform arena and the bind groups that use it (after the work using them was submitted). */
  reset(): void {
    this.#slots.clear();
    this.#used = 0;
    this.#forgetGroups();
  }

  #forgetGroups(): void {
    this.#groups.clear();
    this.#keysOf.clear();
  }

  #id(buffer: GPUBuffer): number {
    let id = this.#ids.get(buffer);
    if (id === undefined) this.#ids.set(buffer, id = this.#nextId++);
    return id;
  }

  /** The arena offset holding `data` (padded to 16 bytes), or -1 when the arena is full. */
  #slot(data: ArrayBufferView): number {
    const size = Math.ceil(data.byteLength / 16) * 16;
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    const key = String.fromCharCode.apply(null, bytes as unknown as number[]);
    let offset = this.#slots.get(key);
    if (offset !== undefined) return offset;
    if (this.#used + size > UNIFORM_ARENA_BYTES) return -1;
    offset = this.#used;
    this.#used += Math.ceil(size / this.#align) * this.#align;
    this.#stage.fill(0, offset, offset + size);
    this.#stage.set(bytes, offset);
    this.#dirtyFrom = Math.min(this.#dirtyFrom, offset);
    this.#dirtyTo = Math.max(this.#dirtyTo, offset + size);
    this.#slots.set(key, offset);
    return offset;
  }
}
