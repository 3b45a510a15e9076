/**
 * Memory that the pipeline's layers share without depending on each other: the device buffer handle that events carry
 * and backends implement, off-heap host memory freed by its owner, and the guard that makes an owner refuse use after
 * close. Depends on nothing else in the project.
 */
package dev.routingreplay.core.memory;
