/**
 * An in-process lock link attached to an Ingest, as the runtime attaches its drivers: started,
 * attached, and stopped on teardown with the pipeline closed after it.
 */
import type { TestContext } from 'node:test';
import { InProcessDriver } from '../../drivers/inprocess.js';
import type { Ingest } from '../../gateway/ingest.js';

export async function attachInProcessDriver(t: TestContext, ingest: Ingest, window: number): Promise<InProcessDriver> {
  const driver = new InProcessDriver({ gatewayId: 'gw-1', window });
  await driver.start();
  ingest.attach(driver);
  t.after(async () => {
    await driver.stop();
    await ingest.close();
  });
  return driver;
}
