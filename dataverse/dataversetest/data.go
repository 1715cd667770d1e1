package dataversetest

import (
	"fmt"
	"strings"

	"github.com/google/uuid"
)

// Table is an entity set of the emulator.
type Table struct {
	Set        string // entity set, e.g. contacts
	Logical    string // logical name, e.g. contact
	IDColumn   string
	NameColumn string
	columns    map[string]bool
	types      map[string]string // Edm type of each column that is not text
	rows       []map[string]any
	index      map[string]map[string][]int // see column
}

func newTable(set, logical, id, name string, cols ...string) *Table {
	t := &Table{Set: set, Logical: logical, IDColumn: id, NameColumn: name,
		columns: map[string]bool{id: true, name: true, "statecode": true, "statuscode": true, "createdon": true, "modifiedon": true, "versionnumber": true},
		types:   map[string]string{id: "Edm.Guid", "statecode": "Edm.Int32", "statuscode": "Edm.Int32", "createdon": "Edm.DateTimeOffset", "modifiedon": "Edm.DateTimeOffset", "versionnumber": "Edm.Int64"}}
	for _, c := range cols {
		t.columns[c] = true
	}
	return t
}

func builtinTables() []*Table {
	phones := []string{"telephone1", "telephone2", "telephone3", "fax", "address1_telephone1", "address1_telephone2", "address2_telephone1"}
	emails := []string{"emailaddress1", "emailaddress2", "emailaddress3"}
	contact := append(append([]string{"firstname", "lastname", "mobilephone", "jobtitle", "parentcustomerid"}, phones...), emails...)
	account := append(append([]string{"accountnumber"}, phones...), emails...)
	lead := append(append([]string{"firstname", "lastname", "companyname", "mobilephone", "subject"}, phones...), emails...)
	return []*Table{
		newTable("contacts", "contact", "contactid", "fullname", contact...),
		newTable("accounts", "account", "accountid", "name", account...),
		newTable("leads", "lead", "leadid", "fullname", lead...),
	}
}

// AddEntitySet adds a custom table (as SCREENPOP_ENTITIES would name it)
// with its id, name and other columns.
func (s *Server) AddEntitySet(set, logical, idColumn, nameColumn string, columns ...string) {
	s.mu.Lock()
	s.tables[set] = newTable(set, logical, idColumn, nameColumn, columns...)
	s.mu.Unlock()
}

// SetColumnType gives a column of entitySet an Edm type other than text
// (e.g. "Edm.Int32" for a whole number or a choice, "Edm.Decimal"): a
// $filter that compares it with a string literal is then refused, as
// Dataverse's OData parser refuses it. Columns are text unless set here;
// the id, statecode, statuscode, createdon, modifiedon and versionnumber
// columns are typed as in Dataverse.
func (s *Server) SetColumnType(entitySet, column, edmType string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t := s.tables[entitySet]; t != nil {
		t.types[column] = edmType
	}
}

// AddRecord adds a row to entitySet and returns its id. Columns must exist
// on the table; statecode defaults to 0 (active); for contacts and leads
// fullname is computed from firstname and lastname as Dataverse does. An id
// column in cols is kept.
func (s *Server) AddRecord(entitySet string, cols map[string]any) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tables[entitySet]
	if t == nil {
		return "", fmt.Errorf("dataversetest: no entity set %q", entitySet)
	}
	row := map[string]any{}
	for k, v := range cols {
		if !t.columns[k] {
			return "", fmt.Errorf("dataversetest: %s has no column %q", entitySet, k)
		}
		if i, ok := v.(int); ok {
			v = float64(i)
		}
		row[k] = v
	}
	id, _ := row[t.IDColumn].(string)
	if id == "" {
		id = uuid.NewString()
		row[t.IDColumn] = id
	}
	if _, ok := row["statecode"]; !ok {
		row["statecode"] = float64(0)
	}
	if t.NameColumn == "fullname" {
		first, _ := row["firstname"].(string)
		last, _ := row["lastname"].(string)
		row["fullname"] = strings.TrimSpace(first + " " + last)
	}
	s.seq++
	row["versionnumber"] = s.seq
	t.rows = append(t.rows, row)
	t.index = nil
	return id, nil
}

// UpdateRecord changes columns of the row of entitySet with id, as a
// PATCH by a Dynamics user would between two lookups: a nil value empties
// the column, statecode 1 deactivates the record (a merged-away record is
// deactivated too, its columns kept). Columns must exist on the table; for
// contacts and leads fullname follows firstname and lastname.
func (s *Server) UpdateRecord(entitySet, id string, cols map[string]any) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tables[entitySet]
	if t == nil {
		return fmt.Errorf("dataversetest: no entity set %q", entitySet)
	}
	row := t.row(id)
	if row == nil {
		return fmt.Errorf("dataversetest: %s has no record %s", entitySet, id)
	}
	for k := range cols {
		if !t.columns[k] || k == t.IDColumn {
			return fmt.Errorf("dataversetest: %s has no column %q to change", entitySet, k)
		}
	}
	for k, v := range cols {
		if i, ok := v.(int); ok {
			v = float64(i)
		}
		if v == nil {
			delete(row, k)
			continue
		}
		row[k] = v
	}
	if t.NameColumn == "fullname" {
		first, _ := row["firstname"].(string)
		last, _ := row["lastname"].(string)
		row["fullname"] = strings.TrimSpace(first + " " + last)
	}
	s.seq++
	row["versionnumber"] = s.seq
	t.index = nil
	return nil
}

// DeleteRecord removes the row of entitySet with id.
func (s *Server) DeleteRecord(entitySet, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tables[entitySet]
	if t == nil {
		return fmt.Errorf("dataversetest: no entity set %q", entitySet)
	}
	for i, row := range t.rows {
		if v, _ := row[t.IDColumn].(string); strings.EqualFold(v, id) {
			t.rows = append(t.rows[:i:i], t.rows[i+1:]...)
			t.index = nil
			return nil
		}
	}
	return fmt.Errorf("dataversetest: %s has no record %s", entitySet, id)
}

// row returns the row with id, or nil. Callers hold s.mu.
func (t *Table) row(id string) map[string]any {
	for _, row := range t.rows {
		if v, _ := row[t.IDColumn].(string); strings.EqualFold(v, id) {
			return row
		}
	}
	return nil
}

// Contact is a convenience shape for AddContact.
type Contact struct {
	FirstName, LastName                 string
	Telephone1, Telephone2, MobilePhone string
	EMailAddress1, EMailAddress2        string
	Inactive                            bool
}

// AddContact adds a contact and returns its id.
func (s *Server) AddContact(c Contact) string {
	cols := map[string]any{"firstname": c.FirstName, "lastname": c.LastName}
	for k, v := range map[string]string{"telephone1": c.Telephone1, "telephone2": c.Telephone2, "mobilephone": c.MobilePhone, "emailaddress1": c.EMailAddress1, "emailaddress2": c.EMailAddress2} {
		if v != "" {
			cols[k] = v
		}
	}
	if c.Inactive {
		cols["statecode"] = 1
	}
	id, err := s.AddRecord("contacts", cols)
	if err != nil {
		panic(err) // the built-in table has these columns
	}
	return id
}

// AddAccount adds an account with a main phone and email and returns its id.
func (s *Server) AddAccount(name, telephone1, email string) string {
	cols := map[string]any{"name": name}
	if telephone1 != "" {
		cols["telephone1"] = telephone1
	}
	if email != "" {
		cols["emailaddress1"] = email
	}
	id, err := s.AddRecord("accounts", cols)
	if err != nil {
		panic(err)
	}
	return id
}

// AddLead adds a lead and returns its id.
func (s *Server) AddLead(first, last, company, telephone1, email string) string {
	cols := map[string]any{"firstname": first, "lastname": last, "companyname": company}
	if telephone1 != "" {
		cols["telephone1"] = telephone1
	}
	if email != "" {
		cols["emailaddress1"] = email
	}
	id, err := s.AddRecord("leads", cols)
	if err != nil {
		panic(err)
	}
	return id
}

// Count returns the number of rows in entitySet.
func (s *Server) Count(entitySet string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t := s.tables[entitySet]; t != nil {
		return len(t.rows)
	}
	return 0
}
