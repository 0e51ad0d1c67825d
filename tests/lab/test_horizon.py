# Licensed under the Apache License, Version 2.0 (the "License"); you may
# not use this file except in compliance with the License. You may obtain
# a copy of the License at
#
#      http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
# WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
# License for the specific language governing permissions and limitations
# under the License.
"""Horizon in a real browser, on the operator's cloud.

Debian's ``chromium`` (headless) through ``chromium-driver`` and selenium
clicks what an operator and a tenant click:

* Admin -> Compute -> Instances -> "Live Migrate Instance": the other host,
  "Block Migration" (the lab's computes have local disks), Submit; the
  instance shows Active on the new host, the driver planned it (its report
  and its notification from RabbitMQ) and the guest's memory check passes;
* Admin -> Compute -> Flavors -> "Update Metadata": the project's Glance
  metadefs namespace is listed with its properties; ``qat_migration:method``
  set there is what the next migration's plan uses;
* Project -> Compute -> Images -> "Edit Image" -> Metadata, as the member
  user who owns the image: a narrowing hint is followed, a widening one is
  not (and the member is refused live migration by Nova's policy).

Each test saves screenshots (dialogs and the moved instance) into
``$NQM_SCREENSHOT_DIR`` (default: a temporary directory, named in the test's
details); ``NQM_SCREENSHOT_DIR=doc/source/_static/horizon`` refreshes the
ones the docs show (``doc/source/admin/horizon.rst``).
"""

import os
import tempfile

from nova_qat_migration_lab import horizon
from nova_qat_migration_lab import scenarios as sc
from nova_qat_migration_lab import services
from tests.lab import test_cloud

CHROMIUM = '/usr/bin/chromium'
CHROMEDRIVER = '/usr/bin/chromedriver'
NAMESPACE = 'Live Migration Planning (nova-qat-migration)'
PROPERTIES = ('Allow post copy', 'Allow throttle', 'Level',
              'Max downtime (ms)', 'Method', 'Parallel connections',
              'Policy', 'Working set (MiB)')
#: A page of Horizon on the loaded two-core machine (it asks Keystone,
#: Nova and Glance on each).
PAGE_TIMEOUT_S = 240


def _screenshot_dir():
    path = os.environ.get('NQM_SCREENSHOT_DIR')
    if path:
        os.makedirs(path, exist_ok=True)
        return path
    return tempfile.mkdtemp(prefix='nqm-horizon-')


class Browser:
    """Headless chromium on the cloud's Horizon, with the few page moves
    the tests need (Horizon's own element ids and its metadata widget).
    """

    def __init__(self, base_url, shots):
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
        options = Options()
        for arg in ('--headless=new', '--no-sandbox',
                    '--disable-dev-shm-usage', '--window-size=1400,1000',
                    '--disable-gpu'):
            options.add_argument(arg)
        options.binary_location = CHROMIUM
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER),
                                       options=options)
        self.driver.set_page_load_timeout(PAGE_TIMEOUT_S)
        self.base = base_url
        self.shots = shots
        self.saved = []

    def quit(self):
        self.driver.quit()

    def wait(self, condition, timeout=PAGE_TIMEOUT_S):
        from selenium.webdriver.support.ui import WebDriverWait
        return WebDriverWait(self.driver, timeout, poll_frequency=0.5,
                             ignored_exceptions=(Exception,)).until(
            condition)

    def get(self, path):
        self.driver.get(self.base + path)

    def css(self, selector, within=None):
        from selenium.webdriver.common.by import By
        return (within or self.driver).find_elements(By.CSS_SELECTOR,
                                                     selector)

    def screenshot(self, name):
        path = os.path.join(self.shots, name + '.png')
        self.driver.save_screenshot(path)
        self.saved.append(path)
        return path

    def login(self, user):
        self.driver.delete_all_cookies()
        self.get('/auth/login/')
        self.wait(lambda d: self.css('#id_username'))
        self.css('#id_username')[0].send_keys(user)
        self.css('#id_password')[0].send_keys(services.PASSWORD)
        self.css('#loginBtn')[0].click()
        self.wait(lambda d: '/auth/login' not in d.current_url)
        # What Settings -> "Items Per Page" stores: the lab keeps every
        # test's images and flavors, the tables show them on one page.
        self.driver.add_cookie({'name': 'API_RESULT_PAGE_SIZE',
                                'value': '200'})

    def row_action(self, table, obj_id, action):
        """Click a Django table row's action (opening its dropdown)."""
        link = '#%s__row_%s__action_%s' % (table, obj_id, action)
        row = self.wait(lambda d: self.css('#%s__row__%s' % (table, obj_id)))
        if not self.css(link)[0].is_displayed():
            self.css('.dropdown-toggle', row[0])[0].click()
        self.wait(lambda d: self.css(link)[0].is_displayed())
        self.css(link)[0].click()

    def angular_row_action(self, text, action):
        """Click an action of the Angular table row showing ``text``."""
        def find(d):
            rows = [r for r in self.css('table tbody tr') if text in r.text]
            return rows[0] if rows else None
        row = self.wait(find)
        self.css('.dropdown-toggle', row)[0].click()
        item = self.wait(lambda d: [
            a for a in self.css('.dropdown-menu a, .dropdown-menu button',
                                row) if a.text.strip() == action])[0]
        item.click()

    # -- the metadata widget (Update Metadata, and Edit Image's step) --------

    def available(self, label):
        for li in self.css('.metadata-tree .metadata-list-group '
                           'li.list-group-item'):
            if li.text.strip() == label:
                return li
        return None

    def available_labels(self):
        return [li.text.strip() for li in self.css(
            '.metadata-tree .metadata-list-group li.list-group-item')]

    def add_property(self, label):
        self.wait(lambda d: self.available(label))
        self.css('a.btn-primary', self.available(label))[0].click()

    def existing(self, key):
        """The input of an added property, by its key."""
        for item in self.css('metadata-tree-item'):
            if self.css('.input-group-addon', item)[0].text.strip() == key:
                return self.css('input, select', item)[0]
        return None

    def open_namespace(self):
        self.wait(lambda d: self.available(NAMESPACE))
        self.available(NAMESPACE).click()
        self.wait(lambda d: self.available('Method'))

    def modal_button(self, text):
        for button in self.css('.modal-footer button, '
                               '.modal-footer input[type=submit]'):
            if (button.text or button.get_attribute('value')).strip() == text:
                return button
        raise AssertionError('no %r button in %s' % (
            text, [b.text for b in self.css('.modal-footer button')]))

    def modal_closed(self):
        self.wait(lambda d: not [m for m in self.css('.modal-dialog')
                                 if m.is_displayed()])


def skip_reason():
    why = test_cloud.skip_reason()
    if why:
        return why
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.path.exists(path):
            return '%s missing (Debian chromium, chromium-driver)' % path
    if not horizon.installed():
        return 'horizon or whitenoise not installed'
    return None


class HorizonTestCase(test_cloud.CloudTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if cls.skip:
            return
        cls.skip = skip_reason()

    def setUp(self):
        super().setUp()
        self.shots = _screenshot_dir()
        self.browser = Browser(self.cloud.url('horizon'), self.shots)
        self.addCleanup(self.browser.quit)
        self.addCleanup(self._shots_detail)

    def _shots_detail(self):
        import testtools
        self.addDetail('screenshots', testtools.content.text_content(
            '\n'.join(self.browser.saved) or '(none)'))

    def planned_record(self, server_id, mark):
        """The source compute's report of the migration after ``mark``."""
        record = self.cloud.reports.wait_for(server_id, mark, 60)
        self.assertIsNotNone(record, 'no report in the source log')
        self.assertEqual('completed', record['outcome'], record)
        event = test_cloud._cloud['listener'].wait_for(server_id)
        self.assertIsNotNone(event, 'no %s from RabbitMQ' % test_cloud.EVENT)
        data = event['payload']['nova_object.data']
        self.assertEqual(record['plan'], data['plan'])
        self.assertEqual('completed', data['outcome'])
        return record


class TestAdmin(HorizonTestCase):
    """The admin's two dialogs, on one guest: Update Metadata on its
    flavor lists the project's metadefs and sets ``qat_migration:method``;
    Live Migrate Instance then moves it, planned with that method.
    """

    #: The flavor the guest boots with (its own, so the dialog edits only
    #: this test's flavor).
    extra_specs = {'qat_migration:policy': 'adaptive'}

    def set_flavor_method(self, flavor, method):
        b = self.browser
        b.get('/admin/flavors/')
        b.row_action('flavors', flavor, 'update_metadata')
        b.open_namespace()
        # Every property of the namespace: on offer, or already set (the
        # flavor's policy).
        labels = b.available_labels()
        self.assertIsNotNone(b.existing('qat_migration:policy'))
        for title in PROPERTIES:
            if title != 'Policy':
                self.assertIn(title, labels)
        b.add_property('Method')
        from selenium.webdriver.support.ui import Select
        Select(b.existing('qat_migration:method')).select_by_visible_text(
            method)
        b.screenshot('flavor-update-metadata')
        b.modal_button('Save').click()
        b.modal_closed()

    def live_migrate(self, server, dest):
        b = self.browser
        b.get('/admin/instances/')
        b.row_action('instances', server, 'live_migrate')
        b.wait(lambda d: b.css('#id_host'))
        # Horizon's themable select: its dropdown, then the host.
        form = b.css('form#live_migrate_form, .modal-dialog form')[0]
        b.css('.themable-select .dropdown-toggle', form)[0].click()
        b.wait(lambda d: [a for a in b.css('a[data-select-value]', form)
                          if a.get_attribute('data-select-value') == dest
                          and a.is_displayed()])
        [a for a in b.css('a[data-select-value]', form)
         if a.get_attribute('data-select-value') == dest][0].click()
        # No shared storage here: the operator ticks Block Migration.
        checkbox = b.css('#id_block_migration')[0]
        if not checkbox.is_selected():
            b.css('label[for=id_block_migration]')[0].click()
        self.assertTrue(checkbox.is_selected())
        b.screenshot('live-migrate-dialog')
        before = {m['id'] for m in self.cloud.migrations(server)}
        b.modal_button('Submit').click()
        b.modal_closed()
        return services.wait_for_migration(
            self.cloud, server, before, services.MIGRATION_TIMEOUT_S, None)

    def test_flavor_metadata_then_live_migrate_button(self):
        # Nova copies a flavor's extra specs into the server at boot (and
        # resize): the metadata is set first, the guest booted after.
        flavor = self.cloud.lab_flavor(
            'lab-%dm' % self.scenario.memory_mb, self.scenario.memory_mb,
            self.extra_specs)
        b = self.browser
        b.login('admin')
        self.set_flavor_method(flavor, 'xbzrle')
        specs = self.cloud.openstack_json('flavor', 'show', flavor)[
            'properties']
        self.assertEqual('xbzrle', specs.get('qat_migration:method'), specs)
        session = self.boot()
        server = session.server_id
        dest = session.other_host()
        mark = self.cloud.reports.mark()
        migration = self.live_migrate(server, dest)
        self.assertEqual('completed', migration['status'], migration)
        # What the operator sees: the instance Active on the new host.

        def moved(d):
            b.get('/admin/instances/')
            row = b.css('#instances__row__%s' % server)
            return row and dest in row[0].text and 'Active' in row[0].text
        b.wait(moved)
        b.screenshot('instance-after-live-migrate')
        record = self.planned_record(server, mark)
        self.assertEqual(dest, session.host)
        self.assertEqual('xbzrle', record['requested_plan']['method'],
                         record['requested_plan'])
        session.reattach()
        ok, verdict = session.verify()
        self.assertTrue(ok, verdict)


class TestImageMetadataAsOwner(HorizonTestCase):
    """The member edits its image's metadata in Horizon (Edit Image ->
    Metadata; Horizon offers Update Metadata on images to metadef
    admins only): a narrowing hint is followed, a widening one is not.
    Nova's policy refuses the member's own live migration.
    """

    def test_image_hints_narrow_never_widen(self):
        c = self.cloud
        image = c.guest_image('member-image', self.scenario.cmdline(1),
                              owner=services.MEMBER_USER)
        name = c.openstack_json('image', 'show', image)['name']
        b = self.browser
        b.login(services.MEMBER_USER)
        b.get('/project/images/')
        b.angular_row_action(name, 'Edit Image')
        step = b.wait(lambda d: [
            li for li in b.css('.modal-dialog .wizard-nav li, '
                               '.modal-dialog .nav li')
            if li.text.strip() == 'Metadata'])[0]
        step.click()
        b.open_namespace()
        # Narrowing: plain pre-copy. Widening: a downtime ten times the
        # operator's 500 ms.
        b.add_property('Method')
        from selenium.webdriver.support.ui import Select
        Select(b.existing('qat_migration:method')).select_by_visible_text(
            'none')
        b.add_property('Max downtime (ms)')
        downtime = b.existing('qat_migration:max_downtime_ms')
        downtime.clear()
        downtime.send_keys('5000')
        b.screenshot('image-edit-metadata')
        b.modal_button('Update Image').click()
        b.modal_closed()
        props = c.openstack_json('image', 'show', image)['properties']
        self.assertEqual('none', props.get('qat_migration:method'), props)
        self.assertEqual('5000', str(props.get(
            'qat_migration:max_downtime_ms')), props)
        flavor = c.lab_flavor('member', self.scenario.memory_mb)
        server = c.boot('member-guest', image, flavor,
                        user=services.MEMBER_USER)
        self.addCleanup(c.delete, server['id'])
        res = c.cli('openstack', 'server', 'migrate', '--live-migration',
                    server['id'], user=services.MEMBER_USER, check=False)
        self.assertNotEqual(0, res.returncode)
        self.assertIn('403', res.stderr + res.stdout)
        session = self.attach(server['id'])
        res = session.migrate(sc.PLANS['adaptive'],
                              timeout_s=test_cloud.TIMEOUT_S)
        self.assert_planned(res, session, 'adaptive')
        plan = res.report['requested_plan']
        self.assertIn(plan['method'], (None, 'none'), plan)
        self.assertLessEqual(plan['max_downtime_ms'], 500, plan)
