/** redis-server for the tests: the arena testbed's (arena/testbed/redis-server.ts), one way to start one. */
export { makeStoreKey, persistenceArgs, type RedisServer, startRedis } from '../../arena/testbed/redis-server.js';
